"""The node's web service (``server.web``): a static page and a WebSocket endpoint.

The WebSocket speaks the same protocol as a TCP client (msgpack frames, see
docs/protocol.md): each connection is wrapped in :class:`WebSocketStream`, a trio
stream, and handed to :meth:`Server.handle_client`. So the browser is just another
client, with the same login and ACLs, and this module adds no request handling of
its own. The only decisions it makes are which files to serve and which origins may
open a WebSocket (:func:`origin_allowed`, pure), and who may read ``/metrics``
(Prometheus text, :mod:`.metrics`): with auth on, HTTP Basic credentials of a user of
the node's auth method whose ACL lets them read ``.distkv.metrics``. Off by default;
see docs/web.md.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from ..config import server_ssl_context

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

    from .server import Server

logger = logging.getLogger(__name__)

#: the WebSocket endpoint's path
WS_PATH = "/ws"
#: Prometheus metrics
METRICS_PATH = "/metrics"
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_HEAD = 16384
_HEAD_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[a-z]+$")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Everything the page needs is served from here; it may not load anything else.
_CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
#: the page's files: plain files in the package, read per request (they are small and
#: rarely asked for), so the node holds none of them in memory
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


class WebSocketStream(trio.abc.Stream):
    """A trio stream over a WebSocket connection: each binary message received is a
    chunk of bytes, each :meth:`send_all` is one binary message. The protocol is
    self-delimiting msgpack, so message boundaries carry no meaning.

    ``transport_stream`` is the TCP stream underneath (if any), so that the server
    sees the peer's address (login throttling per address) as it does for TCP."""

    def __init__(self, ws: WebSocketConnection, transport_stream: trio.abc.Stream | None = None):
        from trio_websocket import ConnectionClosed  # loaded already: ``ws`` is one of its

        self._ws = ws
        self._closed = ConnectionClosed
        self._buf = b""
        self.transport_stream = transport_stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._buf:
            try:
                msg = await self._ws.get_message()
            except self._closed:
                return b""
            if isinstance(msg, str):
                # text frames are not part of the protocol: 1003 = unsupported data
                await self._ws.aclose(1003, "binary msgpack frames only")
                return b""
            self._buf = msg
        if max_bytes is None or len(self._buf) <= max_bytes:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:max_bytes], self._buf[max_bytes:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._ws.send_message(bytes(data))
        except self._closed as exc:
            raise trio.BrokenResourceError("websocket closed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        return

    async def aclose(self) -> None:
        await self._ws.aclose()


def origin_allowed(
    origin: str | None, host: str | None, origins: list[str], bind_host: str
) -> bool:
    """May a WebSocket handshake with these ``Origin`` and ``Host`` headers proceed?

    A browser always sends ``Origin``; a page from another site must not drive the
    node with the user's network position (cross-site WebSocket hijacking), so only
    the page's own origin (``Origin`` names the ``Host`` asked for) or one listed in
    ``server.web.origins`` may connect. While bound to loopback, ``Host`` must be a
    loopback name too: otherwise a DNS-rebinding page would count as same-origin.
    No ``Origin`` at all is a non-browser client, which could use TCP anyway."""
    if host is not None and not _host_allowed(host, origins, bind_host):
        return False
    if origin is None:
        return True
    if origin in origins:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and parts.netloc == host


def _host_allowed(host: str, origins: list[str], bind_host: str) -> bool:
    if bind_host not in _LOOPBACK:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name in _LOOPBACK:
        return True
    return any(urlsplit(o).netloc == host for o in origins)


class _Replay(trio.abc.Stream):
    """A stream that first returns bytes already read (the request head), so that
    trio-websocket can parse the handshake we peeked at."""

    def __init__(self, stream: trio.abc.Stream, head: bytes):
        self._stream = stream
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: Any) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


def _static(name: str) -> bytes | None:
    """The static file ``name`` (a plain name, no path), or None. A path relative to
    the package rather than ``importlib.resources``: DistKV is installed as files,
    and that import alone cost the node ~0.1 MB."""
    if not _NAME.match(name):
        return None
    try:
        return (STATIC / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


async def _respond(
    stream: trio.abc.Stream, status: str, body: bytes, ctype: str, head: bool, extra: str = ""
):
    hdr = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
        f"Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
        f"Content-Security-Policy: {_CSP}\r\nConnection: close\r\n\r\n"
    )
    await stream.send_all(hdr.encode() + (b"" if head else body))


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return method, target, headers


def basic_credentials(value: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` as (name, password); None if absent or malformed."""
    if not value:
        return None
    scheme, _, data = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, pw = base64.b64decode(data.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, pw) if sep and name else None


class WebService:
    """One node's web service: the listener's connection handler."""

    def __init__(self, server: Server, cfg: dict):
        self.server = server
        self.metrics = server.metrics
        self.origins: list[str] = list(cfg.get("origins") or [])
        self.bind_host: str = cfg.get("host") or "127.0.0.1"
        self.max_message = int(server.cfg["server"].get("max_message") or 4 * 1024 * 1024)

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, OSError):
                    pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        with trio.move_on_after(_HEAD_TIMEOUT):
            while b"\r\n\r\n" not in buf and len(buf) < _MAX_HEAD:
                data = await stream.receive_some(4096)
                if not data:
                    return
                buf += data
        if b"\r\n\r\n" not in buf:
            return
        try:
            method, target, headers = _parse_head(buf)
        except ValueError:
            await _respond(stream, "400 Bad Request", b"bad request\n", _TYPES["html"], False)
            return
        path = target.split("?", 1)[0]
        if path == WS_PATH and headers.get("upgrade", "").lower() == "websocket":
            await self._websocket(stream, buf, headers)
            return
        if method not in ("GET", "HEAD"):
            await _respond(stream, "405 Method Not Allowed", b"", "text/plain", False)
            return
        if not _host_allowed(headers.get("host", ""), self.origins, self.bind_host):
            await _respond(stream, "403 Forbidden", b"bad Host\n", "text/plain", False)
            return
        if path == METRICS_PATH:
            await self._metrics(stream, headers, method == "HEAD")
            return
        name = "index.html" if path == "/" else path.lstrip("/")
        body = _static(name)
        if body is None:
            await _respond(stream, "404 Not Found", b"not found\n", "text/plain", method == "HEAD")
            return
        ctype = _TYPES.get(name.rsplit(".", 1)[1], "application/octet-stream")
        await _respond(stream, "200 OK", body, ctype, method == "HEAD")

    async def _metrics(self, stream: trio.abc.Stream, headers: dict, head: bool) -> None:
        """``/metrics``: open while auth is off (like the tree itself); with auth on,
        Basic credentials of a user who may read ``.distkv.metrics``."""
        why = await self._metrics_refused(stream, headers)
        if why is not None:
            status, text = why
            extra = 'WWW-Authenticate: Basic realm="distkv"\r\n' if status.startswith("401") else ""
            await _respond(stream, status, text.encode() + b"\n", "text/plain", head, extra)
            return
        from .metrics import render

        srv = self.server
        watchers = sum(len(ws) for ws in srv.watches.by_prefix.values())
        body = render(self.metrics, srv.state(), watchers).encode()
        await _respond(stream, "200 OK", body, _METRICS_TYPE, head)

    async def _metrics_refused(self, stream: trio.abc.Stream, headers: dict):
        """None if the request may read /metrics, else (HTTP status, one-line reason)."""
        from ..exceptions import DistKVError
        from .commands import NODE_STATUS_PATH

        srv = self.server
        if not srv.auth_required:
            return None
        cred = basic_credentials(headers.get("authorization"))
        if cred is None:
            return "401 Unauthorized", f"log in (HTTP Basic, a {srv.auth_method} user)"
        name, password = cred
        msg = {"method": srv.auth_method, "name": name, "password": password}
        try:
            method, user, _ = await srv.verify_login(_peer_host(stream), msg)
        except DistKVError as exc:  # a wrong password is logged by verify_login
            return "401 Unauthorized", str(exc)
        grants = srv.acls.grants(method, user)
        if not grants.is_unrestricted and not grants.allowed(NODE_STATUS_PATH, "r"):
            return "403 Forbidden", f"{user} may not read {NODE_STATUS_PATH}"
        return None

    async def _websocket(self, stream: trio.SocketStream, head: bytes, headers: dict) -> None:
        # trio-websocket is imported on the first WebSocket, not with the service: it
        # and what it loads (wsproto, h11, and importlib.metadata with email, csv and
        # zipfile for its version check) are ~2.4 MB of the node's RSS, which a node
        # whose page nobody has opened need not pay (docs/web.md, Cost)
        from trio_websocket import wrap_server_stream

        async with trio.open_nursery() as nursery:
            request = None
            # a malformed handshake gets its 400 from wsproto, and no request ever
            with trio.move_on_after(_HEAD_TIMEOUT):
                request = await wrap_server_stream(
                    nursery, _Replay(stream, head), max_message_size=self.max_message
                )
            if request is None:
                nursery.cancel_scope.cancel()
                return
            if not origin_allowed(
                headers.get("origin"), headers.get("host"), self.origins, self.bind_host
            ):
                logger.warning("web: refused WebSocket from origin %r", headers.get("origin"))
                await request.reject(403, body=b"origin not allowed\n")
                nursery.cancel_scope.cancel()
                return
            ws = await request.accept()
            self.metrics.count("web_connections")
            try:
                await self.server.handle_client(WebSocketStream(ws, _socket_stream(stream)))
            finally:
                nursery.cancel_scope.cancel()


def _socket_stream(stream: trio.abc.Stream) -> trio.abc.Stream:
    """The TCP stream under a TLS one: the server reads the peer address from it."""
    return stream.transport_stream if isinstance(stream, trio.SSLStream) else stream


def _peer_host(stream: trio.abc.Stream) -> str:
    try:
        return str(_socket_stream(stream).socket.getpeername()[0])
    except (OSError, AttributeError, IndexError):
        return "local"


async def serve_web(server: Server, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``server.web`` until cancelled; ``task_status.started`` gets the bound
    (host, port) pairs (port 0 in the config: any free port, for tests)."""
    from ..exceptions import ServerError

    cfg = server.cfg["server"].get("web") or {}
    host = cfg.get("host") or "127.0.0.1"
    port = int(cfg.get("port", 0))
    ctx = server_ssl_context(cfg.get("ssl"), "server.web.ssl")  # before listening: a bad file stops the node
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ServerError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (server.web)"
        ) from None
    ports = [lst.socket.getsockname()[:2] for lst in listeners]
    if ctx is not None:
        listeners = [trio.SSLListener(lst, ctx, https_compatible=True) for lst in listeners]
    logger.info("node %s: web page on %s%s", server.name, ports, " (TLS)" if ctx else "")
    task_status.started(ports)
    await trio.serve_listeners(WebService(server, cfg).handle, listeners)
