"""Shared set-up for the web tests: a node with its web service on a free port."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from distkv.groups import unwrap_group
from distkv.server import Server
from distkv.server.web import serve_web
from distkv.testing.server import make_config, serve_clients_in


@asynccontextmanager
async def open_web_server(
    init: Any = "Root", *, origins: list[str] | None = None, **web: Any
) -> AsyncIterator[tuple[Server, int]]:
    """A node serving TCP clients and its web page (port 0: a free one); yields the
    server and the web port. ``web``: more ``server.web`` settings (``ssl``)."""
    wcfg = {"enabled": True, "port": 0, "origins": origins or [], **web}
    cfg = make_config(server={"web": wcfg})
    server = Server("test", cfg, init=init)
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            serve_clients_in(server, nursery)
            await nursery.start(server.serve)
            ports = await nursery.start(serve_web, server)
            yield server, ports[0][1]
            nursery.cancel_scope.cancel()


async def http_get(
    port: int,
    target: str,
    host: str | None = None,
    *,
    auth: tuple[str, str] | None = None,
    ssl_context: Any = None,
) -> tuple[int, dict, bytes]:
    """A bare HTTP/1.1 GET: status, headers (lower-case names), body. ``auth``: HTTP
    Basic (name, password); ``ssl_context``: over TLS."""
    if ssl_context is not None:
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=ssl_context, https_compatible=True
        )
    else:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    extra = ""
    if auth is not None:
        extra = "Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode()
        extra += "\r\n"
    async with stream:
        req = f"GET {target} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n{extra}\r\n"
        await stream.send_all(req.encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


async def ws_handshake_status(port: int, origin: str) -> int:
    """The HTTP status a WebSocket handshake from a page at ``origin`` gets."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        req = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        )
        await stream.send_all(req.encode())
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
    return int(data.split(b" ", 2)[1])
