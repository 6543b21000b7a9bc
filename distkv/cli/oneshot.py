"""A blocking client for the CLI's one-shot commands (``data get|set|delete|list``).

Why not :mod:`distkv.client`: importing trio alone takes 130-250 ms on a small shared
box, two to four times Python's own start-up, and a one-shot ``distkv client data x set
-v : 1`` run by a shell script or a Node-RED ``exec`` node pays it on every value. One
request and its reply need no event loop: this speaks the same protocol
(:mod:`distkv.wire.codec` messages, greeting with ``seq`` 0, replies by ``seq``,
streams ending with ``state: end``) over a plain blocking socket, one request at a time.

Long-lived commands (``watch``, runners) and anything concurrent use the trio client.
The method names and results match :class:`distkv.client.Client` so the commands read
the same.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .. import config as _config
from ..core.path import P, Path
from ..core.types import NotGiven, attrdict
from ..exceptions import ClientError, ProtocolError, ServerClosedError, error_from_wire
from ..wire import codec


def _path(p: Any) -> Path:
    if isinstance(p, Path):
        return p
    if isinstance(p, str):
        return P(p)
    return Path.build(p)


class OneShotClient:
    """One connection, one request at a time. Create it with :func:`connect`."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._unpacker = codec.unpacker()
        self._packer = codec.packer()
        self._seq = 0
        self.server_info: attrdict = attrdict()
        self.user: str | None = None

    def _next(self) -> dict:
        """The next message from the server."""
        for msg in self._unpacker:
            return msg
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise ServerClosedError("the server did not answer in time") from None
            except OSError as exc:
                raise ServerClosedError(f"connection lost: {exc.strerror or exc}") from None
            if not data:
                raise ServerClosedError("server closed the connection")
            self._unpacker.feed(data)
            try:
                for msg in self._unpacker:
                    return msg
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"bad data from server: {exc!r}") from None

    def _send(self, action: str, params: dict) -> int:
        self._seq += 1
        params["seq"] = self._seq
        params["action"] = action
        try:
            data = self._packer.pack(params)
        except (TypeError, ValueError) as exc:
            self._packer.reset()
            raise ClientError(f"cannot encode request: {exc}") from None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ServerClosedError(f"connection lost: {exc.strerror or exc}") from None
        return self._seq

    def _greeted(self) -> None:
        try:
            while not self.server_info:
                msg = self._next()
                if msg.get("seq") == 0:
                    self.server_info = attrdict(msg)
        except ServerClosedError as exc:
            raise ServerClosedError(
                f"the server did not greet us ({exc}; not a DistKV server, or TLS expected?)"
            ) from None

    def request(self, action: str, **params: Any) -> attrdict:
        """Send one request and return its reply; a server error is raised here."""
        seq = self._send(action, params)
        while True:
            msg = self._next()
            if msg.get("seq") == seq:
                break
        if "error" in msg:
            raise error_from_wire(msg)
        del msg["seq"]
        return attrdict(msg)

    def stream(self, action: str, **params: Any) -> Iterator[attrdict]:
        """Send a streaming request; yield its items until the server ends it. Read to
        the end: the connection carries one request at a time."""
        seq = self._send(action, params)
        while True:
            msg = self._next()
            if msg.get("seq") != seq:
                continue
            if "error" in msg:
                raise error_from_wire(msg)
            state = msg.get("state")
            if state is None:
                del msg["seq"]
                yield attrdict(msg)
            elif state == "end":
                return

    # --- the part of the Client API the one-shot commands use ---

    def get(self, path: Any, *, nchain: int = 0) -> attrdict:
        p: dict[str, Any] = {"path": _path(path)}
        if nchain:
            p["nchain"] = nchain
        return self.request("get_value", **p)

    def set(self, path: Any, value: Any, *, chain: Any = NotGiven) -> attrdict:
        p: dict[str, Any] = {"path": _path(path), "value": value}
        if chain is not NotGiven:
            p["chain"] = chain
        return self.request("set_value", **p)

    def delete(self, path: Any, *, chain: Any = NotGiven, recursive: bool = False) -> attrdict:
        if recursive:
            return self.request("delete_tree", path=_path(path))
        p: dict[str, Any] = {"path": _path(path)}
        if chain is not NotGiven:
            p["chain"] = chain
        return self.request("delete_value", **p)

    def list(self, path: Any = ()) -> list:
        return self.request("list", path=_path(path)).children

    def get_tree(
        self, path: Any = (), *, min_depth: int = 0, max_depth: int = -1, nchain: int = 0
    ) -> Iterator[attrdict]:
        return self.stream(
            "get_tree", path=_path(path), min_depth=min_depth, max_depth=max_depth, nchain=nchain
        )


def _ascii(host: str) -> str | bytes:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def _open_socket(c: Mapping) -> socket.socket:
    host, port = c.get("host") or "127.0.0.1", int(c.get("port") or _config.DEFAULT_PORT)
    timeout = float(c.get("init_timeout") or 5)
    try:
        # an ASCII name or address as bytes: a str would load the idna codec
        sock = socket.create_connection((_ascii(host), port), timeout=timeout)
    except TimeoutError:
        raise ServerClosedError(f"timeout connecting to DistKV at {host}:{port}") from None
    except OSError as exc:
        raise ServerClosedError(
            f"cannot connect to DistKV at {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sslcfg = c.get("ssl")
    if sslcfg:
        import ssl

        ctx = ssl.create_default_context(
            cafile=sslcfg.get("cert") if isinstance(sslcfg, Mapping) else None
        )
        if isinstance(sslcfg, Mapping) and sslcfg.get("insecure"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
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
            from ..auth.client import login_message

            client.user = client.request("auth", **login_message(auth)).user
        yield client
    finally:
        sock.close()
