"""The web service without a browser: the WebSocket carries the client protocol
unchanged (the Python client runs over it), origins are checked, files are served."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import open_websocket

from distkv.auth import get_method
from distkv.core.acl import user_path
from distkv.exceptions import ClientAuthRequiredError, ClientChainError
from distkv.server.web import WebSocketStream, origin_allowed
from distkv.testing.server import make_config, open_memory_client, open_test_server
from distkv.util import P, Path
from distkv.wire.codec import unpackb

from .helpers import http_get, open_web_server, ws_handshake_status


@asynccontextmanager
async def ws_client(port: int, origin: str | None = "same", **cfg):
    """The Python client over the node's WebSocket (what the browser page does)."""
    from distkv.client import open_client

    headers = []
    if origin == "same":
        origin = f"http://127.0.0.1:{port}"
    if origin is not None:
        headers.append((b"Origin", origin.encode()))
    async with open_websocket("127.0.0.1", port, "/ws", use_ssl=False, extra_headers=headers) as ws:
        async with open_client(make_config(**cfg), _stream=WebSocketStream(ws)) as client:
            yield client


async def test_greeting_arrives_as_binary_msgpack():
    async with open_web_server() as (_server, port):
        hdr = [(b"Origin", f"http://127.0.0.1:{port}".encode())]
        async with open_websocket("127.0.0.1", port, "/ws", use_ssl=False, extra_headers=hdr) as ws:
            with trio.fail_after(5):
                msg = await ws.get_message()
            assert isinstance(msg, bytes)
            greeting = unpackb(msg)
            assert greeting["seq"] == 0 and greeting["node"] == "test"
            assert greeting["auth"] is None and greeting["version"] == 1


async def test_python_client_over_websocket_gets_sets_watches():
    async with open_web_server() as (server, port), ws_client(port) as c:
        assert (await c.get(P(":"))).value == "Root"
        res = await c.set(P("house.light"), {"on": True, "level": 0.5}, chain=None)
        got = await c.get(P("house.light"), nchain=1)
        assert got.value == {"on": True, "level": 0.5} and got.chain == res.chain
        with pytest.raises(ClientChainError):
            await c.set(P("house.light"), 1, chain=None)
        assert await c.list(P("house")) == ["light"]
        async with c.watch(P("house"), fetch=True, max_depth=1) as w:
            it = aiter(w)
            first = await anext(it)
            assert first.path == P("light")
            assert (await anext(it)).get("state") == "uptodate"
            async with open_memory_client(server) as other:
                await other.set(P("house.light"), 7)
            with trio.fail_after(5):
                change = await anext(it)
            assert change.path == P("light") and change.value == 7


async def test_foreign_origin_is_refused():
    async with open_web_server(origins=["https://house.example"]) as (_server, port):
        # (a raw handshake: trio-websocket's client leaks its socket when refused)
        assert await ws_handshake_status(port, "http://evil.example") == 403
        assert await ws_handshake_status(port, f"http://127.0.0.1:{port}") == 101
        # a configured origin may connect, and so may a non-browser client (no Origin)
        async with ws_client(port, origin="https://house.example") as c:
            assert (await c.get(P(":"))).value == "Root"
        async with ws_client(port, origin=None) as c:
            assert (await c.get(P(":"))).value == "Root"


def test_origin_rules():
    lo = "127.0.0.1"
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", [], lo)
    assert origin_allowed("http://localhost:8080", "localhost:8080", [], lo)
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080", [], lo)
    assert not origin_allowed("http://evil.example", "127.0.0.1:8080", [], lo)
    assert not origin_allowed("null", "127.0.0.1:8080", [], lo)
    # DNS rebinding: evil.example resolving to 127.0.0.1 looks same-origin
    assert not origin_allowed("http://evil.example:8080", "evil.example:8080", [], lo)
    # bound to all interfaces, the page's own host name is fine
    assert origin_allowed("http://house:8080", "house:8080", [], "0.0.0.0")
    assert not origin_allowed("http://evil.example", "house:8080", [], "0.0.0.0")
    assert origin_allowed("https://proxy.example", "127.0.0.1:8080", ["https://proxy.example"], lo)


async def test_login_over_websocket_same_auth():
    async with open_web_server() as (_server, port):
        async with ws_client(port) as c:
            m = get_method("password")
            name, rec = m.make_user({"name": "joe", "password": "pw"})
            await c.set(user_path("password", name), rec)
            await c.set(Path(None, "auth"), {"current": "password"})
        async with ws_client(port) as c:
            with pytest.raises(ClientAuthRequiredError):
                await c.get(P(":"))
        login = {"connect": {"auth": "password name=joe password=pw"}}
        async with ws_client(port, **login) as c:
            assert c.user == "joe"
            assert (await c.get(P(":"))).value == "Root"


async def test_static_files():
    async with open_web_server() as (_server, port):
        status, headers, body = await http_get(port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"/app.js" in body and b"http" not in body.split(b"<body>")[1]  # no external assets
        assert "default-src 'self'" in headers["content-security-policy"]
        status, headers, body = await http_get(port, "/msgpack.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        for bad in ("/../server/web.py", "/%2e%2e/x", "/__init__.py", "/nope.js"):
            assert (await http_get(port, bad))[0] == 404, bad
        assert (await http_get(port, "/", host="evil.example"))[0] == 403


async def test_enabled_by_config_and_off_by_default():
    s = trio.socket.socket()
    await s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = make_config(server={"web": {"enabled": True, "port": port}})
    async with open_test_server(tcp=True, cfg=cfg, init="x"):
        assert (await http_get(port, "/"))[0] == 200
    async with open_test_server(tcp=True, init="x"):
        with pytest.raises(OSError):
            await http_get(port, "/")


async def test_malformed_handshake_is_answered_and_closed():
    async with open_web_server() as (_server, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n".encode()  # no Sec-WebSocket-Key
            )
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(4096):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 400")


# A node process with the service on: its page and /metrics are served without the
# WebSocket stack (trio-websocket, wsproto, h11 and importlib.metadata with email:
# ~2.4 MB of RSS), which is loaded by the first WebSocket.
_LAZY_SCRIPT = """
import sys
import trio
from web.helpers import http_get, open_web_server, ws_handshake_status

STACK = ("trio_websocket", "wsproto", "h11")  # (trio.testing loads pytest: metadata)

async def main():
    async with open_web_server() as (_server, port):
        assert (await http_get(port, "/"))[0] == 200
        assert (await http_get(port, "/metrics"))[0] == 200
        print(sorted(m for m in STACK if m in sys.modules))
        assert await ws_handshake_status(port, f"http://127.0.0.1:{port}") == 101
        print(sorted(m for m in STACK if m in sys.modules))

trio.run(main)
"""


async def test_websocket_stack_is_loaded_by_the_first_websocket_only():
    import os
    import sys

    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": tests}
    proc = await trio.run_process(
        [sys.executable, "-c", _LAZY_SCRIPT], env=env, capture_stdout=True, capture_stderr=True
    )
    before, after = proc.stdout.decode().splitlines()
    assert before == "[]"
    assert after == str(sorted(["trio_websocket", "wsproto", "h11"]))
