"""Web page benchmarks (#13): a browser watching a subtree of 1,000 entries while
100 of them change per second, and what the web service costs the node in RSS.

Real parts: the node is a ``distkv server`` process with ``server.web.enabled``, the
browser is Debian's headless chromium driven over CDP (distkv/testing/cdp.py). The page
records ``performance.timeOrigin + performance.now()`` when it has applied an update to
the DOM (``window.DistKVTrace``, set by this benchmark only); the writer records the wall
clock before each ``set``. Both are the same machine's clock, so a sample is the time
from write to DOM update. RSS baseline: a node of the same run without the web service
that gets the same traffic: the same entries, the same paced writes, a connection
watching the subtree with ``fetch`` (the page's part) and a Python watcher, each
consumed while the writes arrive.
"""

from __future__ import annotations

import random
import time

import trio

from . import Result, at_most, benchmark
from .measure import percentile
from .procs import HOST, free_port

N_ENTRIES = 1000
RATE = 100  # changes per second

ROWS = [
    ("web page: write -> DOM update p95, 1,000 entries watched, 100 changes/s", "ms", at_most(100)),
    ("web page: write -> DOM update p50, 1,000 entries watched, 100 changes/s", "ms", None),
    ("baseline: write -> Python watcher p95, same node, same writes", "ms", None),
    ("node RSS without the web service (baseline), 1,000 entries, same traffic", "MB", None),
    ("node RSS with the web service, the page watching 1,000 entries", "MB", None),
    ("RSS the web service adds to the node", "MB", at_most(5)),
    ("RSS the web service adds to a node whose page nobody opened", "MB", None),
]


async def _fill(c, prefix: str) -> None:
    from distkv.util import Path

    async def part(lo: int) -> None:
        for i in range(lo, N_ENTRIES, 16):
            await c.set(Path(prefix, f"k{i:04d}"), -1)

    async with trio.open_nursery() as n:
        for lo in range(16):
            n.start_soon(part, lo)


async def _perf(page) -> dict:
    """Chromium's main-thread counters (seconds of script, style, layout, all tasks)."""
    res = await page.call("Performance.getMetrics")
    return {m["name"]: m["value"] for m in res["metrics"]}


async def _py_watcher(
    ctx, node, arrived: dict, fetch: bool = False, *, task_status=trio.TASK_STATUS_IGNORED
):
    """The same writes seen by a Python client's watch on ``node``, on a connection of
    its own: the latency baseline, and (with ``fetch``, like the page) the page's part
    of the traffic on the RSS baseline node."""
    from distkv.util import Path

    async with ctx.client(node) as c, c.watch(Path("w"), fetch=fetch, max_depth=1) as w:
        if fetch:
            async for m in w:
                if m.get("state") == "uptodate":
                    break
        task_status.started()
        async for m in w:
            v = m.get("value")
            if isinstance(v, int) and v >= 0:
                arrived.setdefault(v, time.time() * 1000)


async def _paced_writes(c, n: int, written: dict | None = None) -> None:
    """``n`` writes of 0..n-1 to random entries at :data:`RATE`, the same on every
    node (seeded)."""
    from distkv.util import Path

    rnd = random.Random(13)
    t0 = trio.current_time()
    for i in range(n):
        await trio.sleep_until(t0 + i / RATE)
        if written is not None:
            written[i] = time.time() * 1000
        await c.set(Path("w", f"k{rnd.randrange(N_ENTRIES):04d}"), i)


async def _wait_all(arrived: dict, n: int) -> None:
    with trio.move_on_after(5):
        while len(arrived) < n:
            await trio.sleep(0.05)


@benchmark("web", group="web", rows=ROWS, timeout=120)
async def bench_web(ctx):
    """Browser watching 1,000 entries at 100 changes/s: write -> DOM update; RSS cost."""
    from distkv.testing.cdp import chromium_path, open_browser

    if chromium_path() is None:
        return [Result(m, None, u, t, note="chromium is not installed") for m, u, t in ROWS]
    n_writes = ctx.scale(1000, 200)
    web_port = free_port()
    conf = {"server.web.enabled": "true", "server.web.port": web_port}
    async with ctx.server("bench-noweb") as base, ctx.server("bench-web", conf) as web:
        await trio.sleep(0.5)
        idle_base, idle_web = base.rss() / 1e6, web.rss() / 1e6
        async with ctx.client(base) as cb, ctx.client(web) as cw:
            await _fill(cb, "w")
            await _fill(cw, "w")
            async with open_browser() as page:
                await page.call("Page.navigate", url=f"http://{HOST}:{web_port}/#w")
                await page.wait_for(
                    f"document.querySelectorAll('#tree li').length >= {N_ENTRIES}",
                    timeout_ms=30000,
                )
                # the watch's initial dump is done (`uptodate`): updates from here on
                await page.wait_for("root !== null && root.live", timeout_ms=30000)
                await trio.sleep(1)
                await page.js("window.DistKVTrace = []; true")
                await page.call("Performance.enable")
                perf0 = await _perf(page)
                written: dict[int, float] = {}
                arrived: dict[int, float] = {}  # baseline: a Python watcher, same node
                async with trio.open_nursery() as nursery:
                    await nursery.start(_py_watcher, ctx, web, arrived)
                    await _paced_writes(cw, n_writes, written)
                    await _wait_all(arrived, n_writes)
                    nursery.cancel_scope.cancel()
                # the last update has had time to arrive (or is lost: counted below)
                with trio.move_on_after(5):
                    await page.wait_for(f"window.DistKVTrace.length >= {n_writes}", timeout_ms=5000)
                trace = await page.js("window.DistKVTrace")
                perf1 = await _perf(page)
                # the same traffic on the baseline node: a watcher with fetch on its
                # own connection (the page's part, open until measured), a Python
                # watcher (closed before, as on the web node), the same writes
                async with trio.open_nursery() as outer:
                    await outer.start(_py_watcher, ctx, base, {}, True)
                    seen: dict[int, float] = {}
                    async with trio.open_nursery() as nursery:
                        await nursery.start(_py_watcher, ctx, base, seen)
                        await _paced_writes(cb, n_writes)
                        await _wait_all(seen, n_writes)
                        nursery.cancel_scope.cancel()
                    await trio.sleep(0.5)  # both nodes settled
                    rss_base, rss_web = base.rss() / 1e6, web.rss() / 1e6
                    outer.cancel_scope.cancel()
    lat = sorted(t - written[v] for t, v in trace if isinstance(v, int) and v in written)
    seen = len({v for _, v in trace})
    busy = ", ".join(
        f"{k} {perf1.get(m, 0) - perf0.get(m, 0):.2f} s"
        for k, m in (
            ("script", "ScriptDuration"),
            ("style", "RecalcStyleDuration"),
            ("layout", "LayoutDuration"),
            ("all tasks", "TaskDuration"),
        )
    )
    note = (
        f"{seen} of {n_writes} writes reached the DOM; min {lat[0]:.1f} ms, max {lat[-1]:.1f} ms"
        if lat
        else "no updates"
    )
    base_lat = sorted(arrived[v] - written[v] for v in arrived if v in written)
    base_note = f"p50 {percentile(base_lat, 50):.1f} ms" if base_lat else "no updates"
    p95 = percentile(lat, 95) if lat else None
    p50 = percentile(lat, 50) if lat else None
    return [
        Result(ROWS[0][0], p95, "ms", ROWS[0][2], note=note),
        Result(ROWS[1][0], p50, "ms", note=f"page main thread during the writes: {busy}"),
        Result(ROWS[2][0], percentile(base_lat, 95) if base_lat else None, "ms", note=base_note),
        Result(ROWS[3][0], rss_base, "MB", note="VmRSS after the same writes"),
        Result(ROWS[4][0], rss_web, "MB", note="chromium connected, page open"),
        Result(ROWS[5][0], rss_web - rss_base, "MB", ROWS[5][2], note="same run"),
        Result(
            ROWS[6][0],
            idle_web - idle_base,
            "MB",
            note=f"VmRSS 0.5 s after start: {idle_web:.1f} vs {idle_base:.1f} MB",
        ),
    ]
