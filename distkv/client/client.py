"""Client side of the protocol, on trio.

One TCP connection carries any number of concurrent requests: each gets a ``seq`` and
its task sleeps until the reader task hands it the reply with the same ``seq``.
Waiting uses trio's low-level reschedule instead of an Event per call because this is
the hot path of every ``get``/``set``; writes from many tasks coalesce into one
``send_all``.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl as _ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from .. import config as _config
from ..busypoll import BusyPoller, default_budget_us
from ..core.path import P, Path
from ..core.types import NotGiven, attrdict, unwrap_group
from ..exceptions import (
    ClientError,
    DistKVError,
    ProtocolError,
    ServerClosedError,
    error_from_wire,
)
from ..wire import codec

logger = logging.getLogger(__name__)

STREAM_BUFFER = 1000


def _path(p: Any) -> Path:
    if isinstance(p, Path):
        return p
    if isinstance(p, str):
        return P(p)
    return Path.build(p)


_TAKE_OVER = object()  # "nobody is reading now: you read" (see Client._read_once)


class _Waiter:
    """One outstanding request. The reply may arrive while the requesting task is
    still inside ``send_all`` (not parked yet): then it is stored in ``reply`` and
    picked up without sleeping; only a parked task may be rescheduled."""

    __slots__ = ("task", "reply", "parked")

    def __init__(self, task):
        self.task = task
        self.reply = None
        self.parked = False

    def deliver(self, result: outcome.Outcome) -> None:
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task, result)
        else:
            self.reply = result


class StreamCall:
    """A running stream (``get_tree``, ``watch``): async-iterable, and an async
    context manager that stops the stream on exit.

    Items are :class:`attrdict` maps; the ``uptodate`` marker of a watch is yielded as
    ``{"state": "uptodate"}`` (it has no ``path``).
    """

    def __init__(self, client: Client, action: str, params: dict):
        self.client = client
        self.action = action
        self.params = params
        self.seq: int | None = None
        self.recv: trio.MemoryReceiveChannel | None = None
        self.done = False

    async def _start(self) -> None:
        if self.seq is not None:
            return
        self.seq, self.recv = await self.client._start_stream(self.action, self.params)

    async def __aenter__(self) -> StreamCall:
        await self._start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.seq is not None and not self.done:
            self.done = True
            await self.client._stop_stream(self.seq)

    def __aiter__(self) -> StreamCall:
        return self

    async def __anext__(self) -> attrdict:
        # A plain __anext__ instead of an async generator: abandoning the loop early
        # must not leave a half-run generator for the garbage collector.
        await self._start()
        while True:
            if self.done:
                raise StopAsyncIteration
            try:
                msg = await self.recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self.done = True
                raise ServerClosedError("connection closed during a stream") from None
            if "error" in msg:
                self._finish()
                raise error_from_wire(msg)
            state = msg.get("state")
            if state is None:
                del msg["seq"]
                return attrdict(msg)
            if state == "end":
                self._finish()
                raise StopAsyncIteration
            if state != "start":
                return attrdict(state=state)

    def _finish(self) -> None:
        self.done = True
        self.client._streams.pop(self.seq, None)


class Client:
    """A connection to one DistKV server. Create it with :func:`open_client`."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self._stream: trio.abc.Stream | None = None
        self._seq = 0
        self._waiting: dict[int, _Waiter] = {}
        self._streams: dict[int, trio.MemorySendChannel] = {}
        self._outbuf: list[bytes] = []
        self._sending = False
        self._packer = codec.packer()
        self._closed: BaseException | None = None
        self.server_info: attrdict = attrdict()
        self.user: str | None = None
        self._unpacker = codec.unpacker()
        self._raw: socket.socket | None = None
        self._poller: BusyPoller | None = None
        self._reader_busy = False
        self._bg_wakeup = trio.Event()

    @property
    def node(self) -> str | None:
        """The name of the server node we are connected to."""
        return self.server_info.get("node")

    # --- connection ---

    async def _connect(self, nursery: trio.Nursery) -> None:
        c = self.cfg["connect"]
        if self._stream is not None:  # handed in (tests, in-memory transports)
            await self._start_reader(nursery, c)
            return
        host, port = c.get("host") or "127.0.0.1", int(c.get("port") or _config.DEFAULT_PORT)
        try:
            with trio.fail_after(float(c.get("init_timeout") or 5)):
                stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ServerClosedError(
                f"cannot connect to DistKV at {host}:{port}: {exc.strerror or exc}"
            ) from None
        except trio.TooSlowError:
            raise ServerClosedError(f"timeout connecting to DistKV at {host}:{port}") from None
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sslcfg = c.get("ssl")
        if sslcfg:
            ctx = _ssl.create_default_context(
                cafile=sslcfg.get("cert") if isinstance(sslcfg, Mapping) else None
            )
            if isinstance(sslcfg, Mapping) and sslcfg.get("insecure"):
                ctx.check_hostname = False
                ctx.verify_mode = _ssl.CERT_NONE
            stream = trio.SSLStream(stream, ctx, server_hostname=host)
        self._stream = stream
        await self._start_reader(nursery, c)

    async def _start_reader(self, nursery: trio.Nursery, c: Mapping) -> None:
        if isinstance(self._stream, trio.SocketStream):
            # a duplicate of the socket's fd, for _send_now (plain TCP only, not TLS)
            self._raw = socket.socket(fileno=os.dup(self._stream.socket.fileno()))
            budget = c.get("busy_poll")
            budget = default_budget_us(client=True) if budget is None else float(budget)
            if budget:
                self._poller = BusyPoller(self._raw, self._stream, budget)
        nursery.start_soon(self._stream_reader)
        try:
            with trio.fail_after(float(c.get("init_timeout") or 5)):
                while not self.server_info and self._closed is None:
                    await self._read_once()
        except trio.TooSlowError:
            raise ServerClosedError(
                "the server did not greet us (not a DistKV server, or TLS expected?)"
            ) from None
        if self._closed is not None:
            raise ServerClosedError(f"server closed the connection: {self._closed}")

    # Reading is done by whichever task needs data ("leader/follower"): a task waiting
    # for its reply reads the socket itself if nobody else is, dispatches everything
    # that arrived, and on getting its own reply hands the reader role to another
    # waiting task. A sequential caller thus sends and receives in its own task with no
    # task switch per call, which is most of the cost of a round trip. Streams are
    # served by a background task that reads only while streams are open and no
    # request is reading.

    async def _read_once(self) -> None:
        """Receive one chunk and dispatch every complete message in it."""
        self._reader_busy = True
        try:
            try:
                if self._poller is not None:
                    # Poll only for a lone request: with many in flight, sleeping
                    # lets their successors pile up into bigger batches (64 tasks:
                    # polling costs a quarter of the set rate).
                    data = await self._poller.receive_some(65536, len(self._waiting) == 1)
                else:
                    data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(exc)
                return
            if not data:
                self._fail(ServerClosedError("server closed the connection"))
                return
            self._unpacker.feed(data)
            waiting = self._waiting
            try:
                for msg in self._unpacker:
                    # replies (the common case) without a coroutine per message
                    w = waiting.pop(msg.get("seq"), None)
                    if w is not None:
                        w.deliver(outcome.Value(msg))
                    else:
                        await self._dispatch(msg)
            except (ValueError, TypeError, AttributeError) as exc:  # undecodable: unusable
                self._fail(ProtocolError(f"bad data from server: {exc!r}"))
        finally:
            self._reader_busy = False
            self._handoff()

    async def _dispatch(self, msg: Any) -> None:
        seq = msg.get("seq")
        w = self._waiting.pop(seq, None)
        if w is not None:
            w.deliver(outcome.Value(msg))
            return
        ch = self._streams.get(seq)
        if ch is not None:
            try:
                await ch.send(msg)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._streams.pop(seq, None)  # the consumer went away
        elif seq == 0 and not self.server_info:
            self.server_info = attrdict(msg)
        elif "error" in msg:
            logger.warning("server error: %s", msg.get("message"))

    def _handoff(self) -> None:
        """The reader role is free: give it to a parked requester, else to the
        stream reader if streams are open."""
        if self._closed is not None:
            return
        for w in self._waiting.values():
            if w.parked:
                w.deliver(outcome.Value(_TAKE_OVER))
                return
        if self._streams:
            self._bg_wakeup.set()

    async def _stream_reader(self) -> None:
        while self._closed is None:
            await self._bg_wakeup.wait()
            self._bg_wakeup = trio.Event()
            while self._streams and not self._reader_busy and self._closed is None:
                await self._read_once()

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        for w in list(self._waiting.values()):
            # one outcome per waiter: an outcome can be unwrapped only once
            w.deliver(outcome.Error(ServerClosedError(f"connection lost: {exc}")))
        self._waiting.clear()
        for ch in self._streams.values():
            ch.close()
        self._streams.clear()
        self._bg_wakeup.set()

    async def _send(self, data: bytes) -> None:
        self._outbuf.append(data)
        if self._sending:
            return  # the task that is sending picks it up
        self._sending = True
        try:
            while self._outbuf:
                buf = b"".join(self._outbuf) if len(self._outbuf) > 1 else self._outbuf[0]
                self._outbuf.clear()
                sent = self._send_now(buf)
                if sent == len(buf):
                    # Yield, as send_all would, so that requests of other tasks pile up
                    # for the next write; shielded, since the loop must not stop while
                    # they wait in the buffer.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                # The kernel did not take it all. A send cut short by cancellation
                # would corrupt the stream: shield it, but bounded, so a server that
                # stops reading cannot hang us forever.
                with trio.move_on_after(30) as scope:
                    scope.shield = True
                    await self._stream.send_all(buf[sent:])
                if scope.cancelled_caught:
                    self._fail(ServerClosedError("server stopped reading our requests"))
                    await self._stream.aclose()
                    raise ServerClosedError("server stopped reading our requests")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(exc)
            raise ServerClosedError(f"connection lost: {exc}") from None
        finally:
            self._sending = False

    def _send_now(self, buf: bytes) -> int:
        """Offer ``buf`` to the kernel without waiting; bytes taken. The common case
        (everything fits the socket buffer) needs no cancel scope and no trio send
        machinery, which is a good part of a round trip's CPU on a Pi."""
        raw = self._raw
        if raw is None:
            return 0
        try:
            return raw.send(buf)
        except BlockingIOError:
            return 0

    # --- requests ---

    async def request(self, action: str, **params: Any) -> attrdict:
        """Send one request and return the reply; a server error is raised here."""
        if self._closed is not None:
            raise ServerClosedError(f"connection lost: {self._closed}")
        self._seq += 1
        seq = self._seq
        params["seq"] = seq
        params["action"] = action
        try:
            data = self._packer.pack(params)
        except (TypeError, ValueError) as exc:
            self._packer.reset()
            raise ClientError(f"cannot encode request: {exc}") from None
        w = _Waiter(trio.lowlevel.current_task())
        self._waiting[seq] = w
        try:
            await self._send(data)
        except BaseException:
            self._waiting.pop(seq, None)
            raise

        try:
            while w.reply is None:
                if not self._reader_busy:
                    await self._read_once()
                    continue

                def abort(_raise_cancel):
                    self._waiting.pop(seq, None)
                    w.parked = False
                    return trio.lowlevel.Abort.SUCCEEDED

                w.parked = True
                res = await trio.lowlevel.wait_task_rescheduled(abort)
                if res is not _TAKE_OVER:
                    break
            else:
                res = w.reply.unwrap()
        except BaseException:
            self._waiting.pop(seq, None)
            raise
        msg = res
        if "error" in msg:
            raise error_from_wire(msg)
        del msg["seq"]
        return attrdict(msg)

    async def _start_stream(self, action: str, params: dict):
        if self._closed is not None:
            raise ServerClosedError(f"connection lost: {self._closed}")
        self._seq += 1
        seq = self._seq
        send, recv = trio.open_memory_channel(STREAM_BUFFER)
        self._streams[seq] = send
        if not self._reader_busy:
            self._bg_wakeup.set()
        msg = dict(params, seq=seq, action=action)
        await self._send(self._packer.pack(msg))
        return seq, recv

    async def _stop_stream(self, seq: int) -> None:
        ch = self._streams.pop(seq, None)
        if ch is None or self._closed is not None:
            return
        ch.close()
        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                await self.request("stop", task=seq)
            except DistKVError:
                pass

    # --- the API ---

    async def get(self, path: Any, *, nchain: int = 0) -> attrdict:
        """Read one entry: ``res.value`` (absent if there is none), ``res.tock``,
        ``res.chain`` with ``nchain`` > 0."""
        p = {"path": _path(path)}
        if nchain:
            p["nchain"] = nchain
        return await self.request("get_value", **p)

    async def set(
        self, path: Any, value: Any = NotGiven, *, chain: Any = NotGiven, **kw: Any
    ) -> attrdict:
        """Write a value. ``chain=None`` requires a new entry; a chain from ``get``
        requires that nobody changed the entry since (else ``ClientChainError``).
        Returns ``res.chain`` (the new chain) and ``res.tock``."""
        if value is NotGiven:
            if "value" not in kw:
                raise ClientError("set needs a value")
            value = kw.pop("value")
        if kw:
            raise ClientError(f"unknown arguments: {', '.join(kw)}")
        p: dict[str, Any] = {"path": _path(path), "value": value}
        if chain is not NotGiven:
            p["chain"] = chain
        return await self.request("set_value", **p)

    async def delete(
        self, path: Any, *, chain: Any = NotGiven, recursive: bool = False
    ) -> attrdict:
        """Delete one entry (or, with ``recursive``, every value below ``path``)."""
        if recursive:
            return await self.request("delete_tree", path=_path(path))
        p: dict[str, Any] = {"path": _path(path)}
        if chain is not NotGiven:
            p["chain"] = chain
        return await self.request("delete_value", **p)

    async def list(self, path: Any = ()) -> list:
        """The names of the children of ``path`` (that have data below them)."""
        res = await self.request("list", path=_path(path))
        return res.children

    def get_tree(
        self, path: Any = (), *, min_depth: int = 0, max_depth: int = -1, nchain: int = 0
    ) -> StreamCall:
        """Iterate over every entry with a value below ``path``; paths are relative."""
        return StreamCall(
            self,
            "get_tree",
            {"path": _path(path), "min_depth": min_depth, "max_depth": max_depth, "nchain": nchain},
        )

    def watch(
        self,
        path: Any = (),
        *,
        fetch: bool = False,
        min_depth: int = 0,
        max_depth: int = -1,
        nchain: int = 0,
    ) -> StreamCall:
        """Watch ``path`` and below. With ``fetch`` the current state comes first,
        then ``{"state": "uptodate"}``, then every change (paths relative to ``path``).
        Deletions arrive without ``value``."""
        return StreamCall(
            self,
            "watch",
            {
                "path": _path(path),
                "fetch": fetch,
                "min_depth": min_depth,
                "max_depth": max_depth,
                "nchain": nchain,
            },
        )

    def mirror(self, path: Any, *, root_type: type | None = None, **kw: Any):
        """Keep a live local copy of a subtree; see :mod:`distkv.obj`."""
        from ..obj import mirror

        return mirror(self, _path(path), root_type=root_type, **kw)

    async def ping(self) -> attrdict:
        return await self.request("ping")

    async def get_state(self) -> attrdict:
        return await self.request("get_state")

    async def aclose(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._stream is not None:
            with trio.CancelScope(shield=True):
                await self._stream.aclose()


@asynccontextmanager
async def open_client(
    cfg: Mapping | None = None, *, _stream: trio.abc.Stream | None = None, **kw: Any
) -> AsyncIterator[Client]:
    """Connect to a DistKV server.

    With no arguments this uses the same configuration as the CLI (config files,
    ``DISTKV_CONFIG``), defaulting to 127.0.0.1:27586. A partial config merges over
    it: ``open_client(connect={"host": h, "port": p})``. A full config (as the CLI
    builds it) can be passed as ``cfg``.
    """
    if cfg is None:
        cfg = _config.load(extra=kw)
    elif kw:
        cfg = _config.merge(dict(cfg), kw)
    client = Client(dict(cfg))
    client._stream = _stream
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            try:
                await client._connect(nursery)
                auth = client.cfg["connect"].get("auth")
                if auth:
                    from ..auth.client import login

                    await login(client, auth)
                yield client
            finally:
                nursery.cancel_scope.cancel()
                await client.aclose()
