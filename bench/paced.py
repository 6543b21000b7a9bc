"""Benchmarks on a node that replicates, and watch latency at realistic pacing.

Ping-pong latency (one write, wait for its event, next write) and lone-node rates hide
two things every real deployment has: a broker and a second node on it. With Nagle's
algorithm on the bus socket, updates reached the broker in clumps every ~43 ms once
writes were *paced* (one every 10 ms), which ping-pong never shows; and a node that
publishes every write ran at a fifth of a lone node's rate. These rows measure both.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import trio

from . import Result, at_least, at_most, benchmark
from .cluster import _broker, _node
from .core import TASKS, _get_op, _set_op
from .measure import percentile, rounds, run_concurrent, run_seq
from .procs import HOST

PACE_S = 0.010  # one write every 10 ms
BURST = 200  # writes per burst, back to back


@asynccontextmanager
async def _pair(ctx, tag: str):
    """A private broker, node one (-i) and node two (joined): ``(one, two)``."""
    from distkv.client import open_client
    from distkv.util import P

    async with _broker() as broker:
        one = await _node(ctx, broker, f"{tag}one", "-i", "Testing")
        try:
            two = await _node(ctx, broker, f"{tag}two")
            try:
                async with open_client(connect={"host": HOST, "port": two.port}) as c:
                    await c.get(P(":"))  # waits until two is ready
                yield one, two
            finally:
                await ctx.stop(two)
        finally:
            await ctx.stop(one)


async def _rate(ctx, p, factory, tasks: int) -> tuple[float, str]:
    from distkv.client import open_client

    async with open_client(connect={"host": HOST, "port": p.port}) as c:
        op = await factory(c)
        max_s = ctx.scale(1.0, 0.3)
        n_rounds = ctx.scale(3, 1)
        if tasks == 1:
            await run_seq(op, 2000, 0.2)  # warm-up
            return await rounds(lambda r: run_seq(op, 100_000, max_s), n_rounds)
        await run_concurrent(op, tasks, 5000, 0.2)
        return await rounds(lambda r: run_concurrent(op, tasks, 300_000, max_s), n_rounds)


_REPL_ROWS = [
    ("set, sequential, replicating node", "ops/s", None),
    (f"set, {TASKS} tasks, replicating node", "ops/s", None),
    ("get, sequential, replicating node", "ops/s", None),
    (f"get, {TASKS} tasks, replicating node", "ops/s", None),
    ("set, sequential, replicating node / lone node", "%", at_least(80)),
]


@benchmark("repl_rates", group="replicating", rows=_REPL_ROWS, timeout=60)
async def bench_repl_rates(ctx) -> list[Result]:
    """set/get rates (sequential, 64 tasks) on node one while a broker and node two are
    attached (every real deployment); then sequential sets on it and on a lone node,
    round by round in turn (so that a busy machine hits both alike), as a ratio."""
    from distkv.client import open_client

    ops = [
        ("set, sequential", lambda c: _set_op(c, "b.rsseq"), 1),
        (f"set, {TASKS} tasks", lambda c: _set_op(c, "b.rsconc"), TASKS),
        ("get, sequential", lambda c: _get_op(c, "b.rgseq"), 1),
        (f"get, {TASKS} tasks", lambda c: _get_op(c, "b.rgconc"), TASKS),
    ]
    out = []
    async with _pair(ctx, "rr") as (one, _two), ctx.server("rr-lone") as lone:
        for name, factory, tasks in ops:
            rate, note = await _rate(ctx, one, factory, tasks)
            out.append(Result(f"{name}, replicating node", rate, "ops/s", None, note=note))
        async with (
            open_client(connect={"host": HOST, "port": one.port}) as cr,
            open_client(connect={"host": HOST, "port": lone.port}) as cl,
        ):
            op_r = await _set_op(cr, "b.rsratio")
            op_l = await _set_op(cl, "b.rsratio")
            await run_seq(op_r, 2000, 0.2)
            await run_seq(op_l, 2000, 0.2)
            max_s = ctx.scale(1.0, 0.3)
            ratios = []
            for _ in range(ctx.scale(5, 1)):
                r = (await run_seq(op_r, 100_000, max_s)).per_s
                lo = (await run_seq(op_l, 100_000, max_s)).per_s
                ratios.append((100 * r / lo, r, lo))
    ratios.sort()
    pct, r, lo = ratios[len(ratios) // 2]
    out.append(
        Result(
            "set, sequential, replicating node / lone node",
            pct,
            "%",
            at_least(80),
            note=f"median of {len(ratios)} paired rounds "
            f"({ratios[0][0]:.0f}-{ratios[-1][0]:.0f} %); that round {r:,.0f} vs {lo:,.0f}/s",
        )
    )
    return out


async def _paced(writer, watcher, pattern: list[float], prefix: str, timeout: float):
    """Write ``len(pattern)`` values to one key; ``pattern[i]`` is the pause before
    write ``i`` (0: back to back). Returns ``(write start, arrival)`` per write, in
    seconds; the watcher's arrival is when its ``async for`` yields the event."""
    from distkv.util import P

    path = P(f"{prefix}.k")
    now = time.perf_counter
    n = len(pattern)
    sent = [0.0] * n
    got = [0.0] * n
    seen = 0
    done = trio.Event()
    async with trio.open_nursery() as nursery, watcher.watch(P(prefix), fetch=False) as w:
        primed = trio.Event()

        async def listen():
            nonlocal seen
            async for ev in w:
                t = now()
                if "value" not in ev:
                    continue
                v = ev.value
                if v < 0:
                    primed.set()
                elif v < n and not got[v]:
                    got[v] = t
                    seen += 1
                    if seen == n:
                        done.set()

        nursery.start_soon(listen)
        # the watch is registered asynchronously: write until the watcher sees something
        with trio.fail_after(10):
            while not primed.is_set():
                await writer.set(path, -1)
                with trio.move_on_after(0.05):
                    await primed.wait()
        with trio.fail_after(timeout):
            nxt = now()
            for i, pause in enumerate(pattern):
                if pause:
                    nxt += pause
                    await trio.sleep(max(0.0, nxt - now()))
                else:
                    nxt = now()
                sent[i] = now()
                await writer.set(path, i)
            await done.wait()
        nursery.cancel_scope.cancel()
    return sent, got


def _lat_ms(sent, got, skip: int = 0) -> list[float]:
    return sorted((g - s) * 1000 for s, g in list(zip(sent, got, strict=True))[skip:])


async def _paced_latency(writer, watcher, n: int, warm: int, prefix: str) -> list[float]:
    pattern = [PACE_S] * (warm + n)
    sent, got = await _paced(writer, watcher, pattern, prefix, timeout=(warm + n) * PACE_S + 10)
    return _lat_ms(sent, got, warm)


@benchmark(
    "watch_paced",
    group="core",
    rows=[
        ("watch latency p50, same node, a write every 10 ms", "ms", None),
        ("watch latency p99, same node, a write every 10 ms", "ms", None),
    ],
)
async def bench_watch_paced(ctx) -> list[Result]:
    """Writer and watcher on two connections to one node; one write every 10 ms (not
    waiting for the event): time from before `set` until the watcher gets it."""
    n, warm = ctx.scale(1000, 200), ctx.scale(50, 10)
    async with ctx.server("bench-wpaced") as p, ctx.client(p) as writer, ctx.client(p) as watcher:
        ms = await _paced_latency(writer, watcher, n, warm, "b.wp")
    note = f"{len(ms)} writes, min {ms[0]:.3f} ms, max {ms[-1]:.3f} ms"
    return [
        Result("watch latency p50, same node, a write every 10 ms", percentile(ms, 50), "ms", None, note=note),
        Result("watch latency p99, same node, a write every 10 ms", percentile(ms, 99), "ms", None),
    ]  # fmt: skip


_PACED_ROWS = [
    ("watch latency p50, across nodes, a write every 10 ms", "ms", at_most(0.8)),
    ("watch latency p99, across nodes, a write every 10 ms", "ms", at_most(3)),
    ("watch latency max, across nodes, bursts of 200", "ms", at_most(20)),
    ("watch latency p50, across nodes, bursts of 200", "ms", None),
]


@benchmark("repl_watch_paced", group="replicating", rows=_PACED_ROWS, timeout=40)
async def bench_repl_watch_paced(ctx) -> list[Result]:
    """Writer on node one, watcher on node two (private mosquitto): one write every
    10 ms, then bursts of 200 back-to-back writes with a pause between; time from before
    each `set` until the far watcher gets that event."""
    from distkv.client import open_client

    n, warm = ctx.scale(1000, 200), ctx.scale(50, 10)
    bursts = ctx.scale(5, 2)
    async with (
        _pair(ctx, "rwp") as (one, two),
        open_client(connect={"host": HOST, "port": one.port}) as writer,
        open_client(connect={"host": HOST, "port": two.port}) as watcher,
    ):
        ms = await _paced_latency(writer, watcher, n, warm, "b.rwp")
        pattern = []
        for _ in range(bursts):
            pattern += [0.3] + [0] * (BURST - 1)
        sent, got = await _paced(writer, watcher, pattern, "b.rwb", timeout=30)
    bms = _lat_ms(sent, got)
    spans = [(sent[i + BURST - 1] - sent[i]) * 1000 for i in range(0, len(sent), BURST)]
    note = f"{len(ms)} writes, min {ms[0]:.3f} ms, max {ms[-1]:.3f} ms"
    bnote = (
        f"{bursts} bursts of {BURST}, 0.3 s apart; writing a burst took "
        f"{min(spans):.1f}-{max(spans):.1f} ms"
    )
    return [
        Result(_PACED_ROWS[0][0], percentile(ms, 50), "ms", at_most(0.8), note=note),
        Result(_PACED_ROWS[1][0], percentile(ms, 99), "ms", at_most(3)),
        Result(_PACED_ROWS[2][0], bms[-1], "ms", at_most(20), note=bnote),
        Result(_PACED_ROWS[3][0], percentile(bms, 50), "ms", None),
    ]
