"""Test helpers: an in-process server, and clients that reach it without sockets."""

from __future__ import annotations

import copy
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from .. import config as _config
from ..client import Client, open_client
from ..core.types import NotGiven
from ..groups import unwrap_group
from ..server import Server


def make_config(**over: Any) -> dict:
    """Defaults with port 0 (the OS picks a free port), no bus, no config files read."""
    cfg = copy.deepcopy(_config.DEFAULTS)
    cfg["server"]["bind_default"]["port"] = 0
    cfg["server"]["mqtt"]["uri"] = None  # never join a broker that happens to run here
    return _config.merge(cfg, over) if over else cfg


_CLIENT_NURSERIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def serve_clients_in(server: Server, nursery: trio.Nursery) -> None:
    """Where :func:`attach_stream` runs ``server``'s in-memory client sessions."""
    _CLIENT_NURSERIES[server] = nursery


def attach_stream(server: Server, *, lockstep: bool = False) -> trio.abc.Stream:
    """A new in-memory connection to ``server``: returns the client's end. With
    ``lockstep`` the server's sends block until the client reads (a full TCP window)."""
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    a, b = pair()
    _CLIENT_NURSERIES[server].start_soon(server.handle_client, b)
    return a


@asynccontextmanager
async def open_test_server(
    name: str = "test",
    *,
    init: Any = NotGiven,
    tcp: bool = False,
    cfg: dict | None = None,
    **server_kw: Any,
) -> AsyncIterator[Server]:
    """A running :class:`Server`; with ``tcp`` it also listens on a free loopback port.
    ``server_kw`` go to :class:`Server` (``disk_write``, ...)."""
    server = Server(name, cfg or make_config(), init=init, **server_kw)
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            serve_clients_in(server, nursery)
            if tcp:
                await nursery.start(server.serve)
            elif init is not NotGiven:
                server.write((), init)
            yield server
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_memory_client(server: Server, **cfg: Any) -> AsyncIterator[Client]:
    """A client connected to ``server`` through an in-memory stream pair."""
    async with open_client(make_config(**cfg), _stream=attach_stream(server)) as client:
        yield client


@asynccontextmanager
async def open_tcp_client(server: Server, **cfg: Any) -> AsyncIterator[Client]:
    host, port = server.ports[0]
    connect = {"host": host, "port": port, **cfg.pop("connect", {})}
    async with open_client(make_config(connect=connect, **cfg)) as client:
        yield client


class RawSession:
    """A protocol-level client for tests, on the sans-IO :class:`ClientProtocol`:
    requests queue until :meth:`send` writes them all at once (true pipelining)."""

    def __init__(self, stream: trio.abc.Stream):
        from ..wire.protocol import ClientProtocol

        self.stream = stream
        self.proto = ClientProtocol()
        self.replies: dict[int, dict] = {}

    def request(self, action: str, **params: Any) -> int:
        return self.proto.send_request(action, params)

    async def send(self) -> None:
        await self.stream.send_all(self.proto.data_to_send())

    async def replies_in_order(self, n: int) -> list[tuple[int, dict]]:
        """The next ``n`` replies, in the order they arrive."""
        from ..wire.protocol import Reply

        out: list[tuple[int, dict]] = []
        while len(out) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the server closed the connection")
            out.extend((e.seq, e.msg) for e in self.proto.receive_data(data) if type(e) is Reply)
        return out


@asynccontextmanager
async def open_raw_session(server: Server) -> AsyncIterator[RawSession]:
    a = attach_stream(server)
    yield RawSession(a)
    await a.aclose()


async def raw_connection(server: Server, *, lockstep: bool = False):
    """A connection that speaks raw msgpack (for feeding a server bad input): returns
    ``(stream, recv)``; ``await recv()`` is the next message, None once closed. The
    greeting is read and checked already."""
    from ..wire import codec

    a = attach_stream(server, lockstep=lockstep)
    unp = codec.unpacker()

    async def recv():
        while True:
            for msg in unp:
                return msg
            data = await a.receive_some(65536)
            if not data:
                return None
            unp.feed(data)

    greeting = await recv()
    assert greeting["seq"] == 0 and greeting["node"] == server.name
    return a, recv


async def setup_password(c: Client, users=("root", "joe"), **extra: Any) -> None:
    """Add password users ``NAME`` with password ``pw-NAME`` (``extra[name]``: more
    record fields, e.g. ``{"acl": "ro"}``), then switch password auth on."""
    from ..auth import get_method
    from ..core.acl import user_path
    from ..core.path import Path

    m = get_method("password")
    for u in users:
        name, rec = m.make_user({"name": u, "password": f"pw-{u}"})
        await c.set(user_path("password", name), {**rec, **extra.get(u, {})})
    await c.set(Path(None, "auth"), {"current": "password"})


def login(user: str, password: str | None = None) -> dict:
    """Client config overrides that log in as a :func:`setup_password` user."""
    return {"connect": {"auth": f"password name={user} password={password or 'pw-' + user}"}}
