"""A blocking client for the CLI's one-shot commands (``data get|set|delete|list``).

Why not :mod:`distkv.client`: importing trio alone takes 130-250 ms on a small shared
box, two to four times Python's own start-up, and a one-shot ``distkv client data x set
-v : 1`` run by a shell script or a Node-RED ``exec`` node pays it on every value. One
request and its reply need no event loop: this drives the same sans-IO protocol object
(:class:`distkv.wire.protocol.ClientProtocol`) over a plain blocking socket, one
request at a time.

Long-lived commands (``watch``, runners) and anything concurrent use the trio client.
The method names and results match :class:`distkv.client.Client` so the commands read
the same.
"""

from __future__ import annotations

import _socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .. import config as _config
from ..core.path import as_path
from ..core.types import NotGiven
from ..exceptions import ServerClosedError, error_from_wire
from ..result import attrdict
from ..wire.protocol import ClientProtocol, ConnectionBroken, Reply, StreamEnded


class OneShotClient:
    """One connection, one request at a time, around the same sans-IO
    :class:`ClientProtocol` as the trio client. Create it with :func:`connect`."""

    def __init__(self, sock: _socket.socket):
        self._sock = sock
        self._proto = ClientProtocol()
        self._events: list = []
        self.server_info: attrdict = attrdict()
        self.user: str | None = None

    def _flush(self) -> None:
        data = self._proto.data_to_send()
        if data:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ServerClosedError(f"connection lost: {exc.strerror or exc}") from None

    def _receive(self) -> None:
        """Read once from the socket and queue the events it completes."""
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise ServerClosedError("the server did not answer in time") from None
        except OSError as exc:
            raise ServerClosedError(f"connection lost: {exc.strerror or exc}") from None
        if not data:
            raise ServerClosedError("server closed the connection")
        for ev in self._proto.receive_data(data):
            if type(ev) is ConnectionBroken:
                raise ev.error
            self._events.append(ev)

    def _greeted(self) -> None:
        try:
            while self._proto.greeting is None:
                self._receive()
        except ServerClosedError as exc:
            raise ServerClosedError(
                f"the server did not greet us ({exc}; not a DistKV server, or TLS expected?)"
            ) from None
        self.server_info = attrdict(self._proto.greeting)

    def request(self, action: str, **params: Any) -> attrdict:
        """Send one request and return its reply; a server error is raised here."""
        seq = self._proto.send_request(action, params)
        self._flush()
        while True:
            for ev in self._events:
                if type(ev) is Reply and ev.seq == seq:
                    self._events.clear()
                    msg = ev.msg
                    if "error" in msg:
                        raise error_from_wire(msg)
                    del msg["seq"]
                    return attrdict(msg)
            self._events.clear()
            self._receive()

    def stream(self, action: str, **params: Any) -> Iterator[attrdict]:
        """Send a streaming request; yield its items until the server ends it
        (credit is granted as items are taken, as the trio client does)."""
        proto = self._proto
        seq = proto.start_stream(action, params)
        self._flush()
        while True:
            try:
                msg = proto.next_item(seq)
            except StreamEnded:
                return
            self._flush()  # credit
            if msg is None:
                self._events.clear()
                self._receive()
            elif msg.get("state") is None:
                yield attrdict(msg)

    # --- the part of the Client API the one-shot commands use ---

    def get(self, path: Any, *, nchain: int = 0) -> attrdict:
        p: dict[str, Any] = {"path": as_path(path)}
        if nchain:
            p["nchain"] = nchain
        return self.request("get_value", **p)

    def set(self, path: Any, value: Any, *, chain: Any = NotGiven) -> attrdict:
        p: dict[str, Any] = {"path": as_path(path), "value": value}
        if chain is not NotGiven:
            p["chain"] = chain
        return self.request("set_value", **p)

    def delete(self, path: Any, *, chain: Any = NotGiven, recursive: bool = False) -> attrdict:
        if recursive:
            return self.request("delete_tree", path=as_path(path))
        p: dict[str, Any] = {"path": as_path(path)}
        if chain is not NotGiven:
            p["chain"] = chain
        return self.request("delete_value", **p)

    def list(self, path: Any = ()) -> list:
        return list(self.request("list", path=as_path(path)).children)

    def get_tree(
        self, path: Any = (), *, min_depth: int = 0, max_depth: int = -1, nchain: int = 0
    ) -> Iterator[attrdict]:
        return self.stream(
            "get_tree", path=as_path(path), min_depth=min_depth, max_depth=max_depth, nchain=nchain
        )


def _ascii(host: str) -> str | bytes:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def _open_socket(c: Mapping) -> _socket.socket:
    """A connection to the first of ``connect.servers`` (or host/port) that answers."""
    err: ServerClosedError | None = None
    for host, port in _config.server_list(c):
        try:
            return _open_one(c, host, port)
        except ServerClosedError as exc:
            err = exc
    raise err


def _connect(host: str | bytes, port: int, timeout: float) -> _socket.socket:
    """``socket.create_connection`` on the C module: the ``socket`` module (with
    ``selectors``, and its enums built at import) is a tenth of a one-shot command's
    own start-up, and a blocking request/reply needs none of it."""
    err: OSError | None = None
    for af, kind, proto, _, addr in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(af, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as exc:
            sock.close()
            err = exc
    raise err if err is not None else OSError(f"no address for {host!r}")


def _open_one(c: Mapping, host: str, port: int) -> _socket.socket:
    timeout = float(c.get("init_timeout") or 5)
    try:
        # an ASCII name or address as bytes: a str would load the idna codec
        sock = _connect(_ascii(host), port, timeout)
    except TimeoutError:
        raise ServerClosedError(f"timeout connecting to DistKV at {host}:{port}") from None
    except OSError as exc:
        raise ServerClosedError(
            f"cannot connect to DistKV at {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    ctx = _config.client_ssl_context(c)
    if ctx is not None:
        import socket
        import ssl

        sock = socket.socket(fileno=sock.detach())  # ssl wraps only socket.socket
        try:
            sock = ctx.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ServerClosedError(f"TLS with DistKV at {host}:{port} failed: {exc}") from None
    return sock


@contextmanager
def connect(cfg: Mapping) -> Iterator[OneShotClient]:
    """Connect as ``cfg["connect"]`` says (host, port, ssl, auth, init_timeout), log in
    if ``auth`` is set, and close the connection on exit."""
    c = cfg["connect"]
    sock = _open_socket(c)
    try:
        client = OneShotClient(sock)
        client._greeted()
        sock.settimeout(None)  # like the trio client: a request may take its time
        auth = c.get("auth")
        if auth:
            from ..auth.base import login_message

            client.user = client.request("auth", **login_message(auth)).user
        yield client
    finally:
        sock.close()
