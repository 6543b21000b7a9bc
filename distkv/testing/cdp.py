"""Just enough of the Chrome DevTools Protocol to drive Debian's headless chromium
from a trio test: start it, open the page's debugger WebSocket, evaluate script,
take screenshots. Nothing downloads a browser."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab over CDP: ``call`` a method, ``js`` evaluates an expression (awaiting
    promises) and returns its value."""

    def __init__(self, ws: WebSocketConnection):
        self.ws = ws
        self._id = 0

    async def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        my = self._id
        await self.ws.send_message(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.get_message())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expr: str) -> Any:
        res = await self.call(
            "Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"page script failed: {res['exceptionDetails']}\n{expr}")
        return res["result"].get("value")

    async def wait_for(self, cond: str, timeout_ms: int = 5000) -> Any:
        """Wait (in the page) until the JS expression ``cond`` is truthy; its value."""
        return await self.js(
            f"""new Promise((resolve, reject) => {{
                const t0 = performance.now();
                (function check() {{
                    let v; try {{ v = ({cond}); }} catch (e) {{ v = null; }}
                    if (v) resolve(v);
                    else if (performance.now() - t0 > {timeout_ms})
                        reject(new Error("timed out waiting for: " + {json.dumps(cond)}));
                    else setTimeout(check, 5);
                }})();
            }})"""
        )

    async def screenshot(self, name: str) -> Path:
        out = Path(os.environ.get("DISTKV_SCREENSHOTS", "build/screenshots")) / "web"
        out.mkdir(parents=True, exist_ok=True)
        res = await self.call("Page.captureScreenshot", format="png")
        path = out / f"{name}.png"
        path.write_bytes(base64.b64decode(res["data"]))
        return path


async def _http_json(port: int, target: str) -> Any:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = await stream.receive_some(65536)
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if not chunk:
                break
            if b"\r\n\r\n" in data:
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
    return json.loads(data.partition(b"\r\n\r\n")[2])


@asynccontextmanager
async def open_browser(width: int = 390, height: int = 844) -> AsyncIterator[Page]:
    """Headless chromium with a fresh profile; yields its first tab, sized like a
    phone by default."""
    exe = chromium_path()
    assert exe is not None
    with tempfile.TemporaryDirectory(
        prefix="distkv-chromium-", ignore_cleanup_errors=True
    ) as profile:
        proc = await trio.lowlevel.open_process(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            portfile = Path(profile) / "DevToolsActivePort"
            with trio.fail_after(30):
                while not (portfile.exists() and portfile.read_text().count("\n") >= 1):
                    await trio.sleep(0.05)  # chromium writes this file when it listens
            port = int(portfile.read_text().split()[0])
            with trio.fail_after(10):
                targets = await _http_json(port, "/json/list")
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with open_websocket_url(url, max_message_size=64 * 1024 * 1024) as ws:
                page = Page(ws)
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=width < 600,
                )
                yield page
        finally:
            proc.terminate()
            with trio.move_on_after(5) as cs:
                cs.shield = True
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
