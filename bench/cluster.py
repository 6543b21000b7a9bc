"""Replication benchmarks: two `distkv server` processes on a private mosquitto."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import trio

from . import Result, at_most, benchmark
from .measure import percentile, watch_latencies
from .procs import HOST

SYNC_N = 20_000


@asynccontextmanager
async def _broker():
    from distkv.testing.mosquitto import Mosquitto

    b = Mosquitto(max_queued_messages=100_000)
    await b.astart()
    try:
        yield b
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(b.close)


async def _node(ctx, broker, name: str, *args: str, root: str = "distkv"):
    """A node on ``broker``; each network a benchmark builds gets its own ``root``:
    a node refuses ``-i`` on a network that already has nodes (records of an earlier
    run stay on the broker)."""
    conf = {"server.mqtt.uri": broker.uri, "server.ready_timeout": 30, "server.root": root}
    return await ctx.pool.start_node(name, *args, conf=conf, timeout=15)


@benchmark(
    "repl_sync",
    group="replication",
    rows=[
        ("2nd node start to serving 20k entries", "s", at_most(1.5)),
        ("2nd node start to serving, empty tree", "s", at_most(0.5)),
    ],
)
async def bench_repl_sync(ctx) -> list[Result]:
    """Node one (-i) holds N entries; spawn node two (no -i) and time from spawn until
    a `get` on two answers (requests wait until the sync is done)."""
    from distkv.client import open_client
    from distkv.util import P

    n = ctx.scale(SYNC_N, 2000)
    out = []
    async with _broker() as broker:
        for fill in (n, 0):
            one = await _node(ctx, broker, f"one{fill}", "-i", "Testing", root=f"sync{fill}")
            try:
                async with open_client(connect={"host": HOST, "port": one.port}) as c:

                    async def put(lo, c=c, fill=fill):
                        for i in range(lo, fill, 32):
                            await c.set(P(f"sync.k{i}"), {"i": i, "s": "x" * 20})

                    async with trio.open_nursery() as nursery:
                        for lo in range(32):
                            nursery.start_soon(put, lo)
                    # let one's updates finish flowing through the broker first
                    with trio.fail_after(30):
                        while (await c.get_state()).replication["bus"]["pending"]:
                            await trio.sleep(0.05)
                t0 = time.perf_counter()
                two = await _node(ctx, broker, f"two{fill}", root=f"sync{fill}")
                try:
                    async with open_client(connect={"host": HOST, "port": two.port}) as c:
                        assert (await c.get(P(":"))).value == "Testing"
                        dt = time.perf_counter() - t0
                        st = (await c.get_state()).replication
                        got = sum(1 for _ in [x async for x in c.get_tree(P("sync"))])
                finally:
                    await ctx.stop(two)
            finally:
                await ctx.stop(one)
            ls = st.get("last_sync") or {}
            note = f"{got} entries; the dump itself took {ls.get('seconds')} s"
            if fill:
                out.append(
                    Result(
                        f"2nd node start to serving {n // 1000}k entries",
                        dt,
                        "s",
                        at_most(1.5),
                        note=note,
                    )
                )
            else:
                out.append(
                    Result(
                        "2nd node start to serving, empty tree", dt, "s", at_most(0.5), note=note
                    )
                )
    return out


@benchmark(
    "repl_watch_latency",
    group="replication",
    rows=[
        ("watch latency p50, across nodes", "ms", at_most(0.6)),
        ("watch latency p99, across nodes", "ms", at_most(1.2)),
    ],
)
async def bench_repl_watch_latency(ctx) -> list[Result]:
    """Writer on node one, watcher on node two: time from before `set` until the
    watcher's iterator yields the event (one write at a time)."""
    from distkv.client import open_client
    from distkv.util import P

    async with _broker() as broker:
        one = await _node(ctx, broker, "wone", "-i", "Testing")
        two = await _node(ctx, broker, "wtwo")
        try:
            async with (
                open_client(connect={"host": HOST, "port": one.port}) as writer,
                open_client(connect={"host": HOST, "port": two.port}) as watcher,
            ):
                await watcher.get(P(":"))  # ready
                ms = await watch_latencies(
                    writer, watcher, ctx.scale(3000, 300), ctx.scale(300, 50), ctx.scale(30, 10)
                )
        finally:
            await ctx.stop(two)
            await ctx.stop(one)
    note = f"{len(ms)} writes, min {ms[0]:.3f} ms, max {ms[-1]:.3f} ms"
    return [
        Result(
            "watch latency p50, across nodes", percentile(ms, 50), "ms", at_most(0.6), note=note
        ),
        Result("watch latency p99, across nodes", percentile(ms, 99), "ms", at_most(1.2)),
    ]


async def _entries(port: int, prefix: str) -> int:
    """How many values node ``port`` holds below ``prefix``."""
    from distkv.client import open_client
    from distkv.util import P

    async with open_client(connect={"host": HOST, "port": port}) as c:
        return sum([1 async for _ in c.get_tree(P(prefix))])


async def _burst(port: int, prefix: str, n: int, tasks: int = 64) -> float:
    """Write ``n`` entries with ``tasks`` concurrent tasks on one connection; seconds."""
    from distkv.client import open_client
    from distkv.util import P

    paths = [P(f"{prefix}.k{i}") for i in range(n)]
    async with open_client(connect={"host": HOST, "port": port}) as c:
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for lo in range(tasks):

                async def put(lo=lo):
                    for i in range(lo, n, tasks):
                        await c.set(paths[i], i)

                nursery.start_soon(put)
        return time.perf_counter() - t0


@benchmark(
    "repl_throughput",
    group="replication",
    rows=[
        ("set, 64 tasks, node one (replicated)", "ops/s", None),
        ("node two has every write, after the burst", "s", None),
    ],
)
async def bench_repl_throughput(ctx) -> list[Result]:
    """64 tasks write as fast as they can on node one; how long until node two holds
    all of them (a growing backlog would show as a long tail)."""
    from distkv.client import open_client
    from distkv.util import P

    n = ctx.scale(50_000, 5000)
    async with _broker() as broker:
        one = await _node(ctx, broker, "tone", "-i", "Testing")
        two = await _node(ctx, broker, "ttwo")
        try:
            async with open_client(connect={"host": HOST, "port": two.port}) as c2:
                await c2.get(P(":"))  # ready
                async with c2.watch(P("tp.end")) as w:
                    dt = await _burst(one.port, "tp", n)
                    t_end = time.perf_counter()
                    async with open_client(connect={"host": HOST, "port": one.port}) as c1:
                        await c1.set(P("tp.end"), True)  # ordered behind the burst
                    with trio.fail_after(60):
                        async for ev in w:
                            if "value" in ev:
                                break
                    lag = time.perf_counter() - t_end
                got = await _entries(two.port, "tp")
        finally:
            await ctx.stop(two)
            await ctx.stop(one)
    return [
        Result("set, 64 tasks, node one (replicated)", n / dt, "ops/s", None, note=f"{n:,} writes"),
        Result(
            "node two has every write, after the burst",
            lag,
            "s",
            at_most(1.0),
            note=f"{got:,} of {n + 1:,} entries on node two ({(n / (dt + lag)):,.0f}/s end to end)",
        ),
    ]


@benchmark(
    "repl_split",
    group="replication",
    rows=[("convergence after a split (10k writes per side)", "s", at_most(3.0))],
    timeout=150,
)
async def bench_repl_split(ctx) -> list[Result]:
    """Stop the broker, write 10,000 entries on each node, keep the split for a while
    (60 s; nodes declare each other dead after 10 s), restart the broker and time until
    both nodes hold all 20,000 entries."""
    n = ctx.scale(10_000, 1000)
    split_s = ctx.scale(60, 12)
    async with _broker() as broker:
        one = await _node(ctx, broker, "sone", "-i", "Testing")
        two = await _node(ctx, broker, "stwo")
        try:
            await _entries(two.port, "x")  # two is ready
            t_split = time.perf_counter()
            await broker.astop()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_burst, one.port, "split.one", n)
                nursery.start_soon(_burst, two.port, "split.two", n)
            await trio.sleep(max(0, split_s - (time.perf_counter() - t_split)))
            await broker.astart()
            t0 = time.perf_counter()
            with trio.fail_after(120):
                while True:
                    a = await _entries(one.port, "split")
                    b = await _entries(two.port, "split")
                    if a == b == 2 * n:
                        break
                    await trio.sleep(0.05)
            dt = time.perf_counter() - t0
        finally:
            await ctx.stop(two)
            await ctx.stop(one)
    return [
        Result(
            "convergence after a split (10k writes per side)",
            dt,
            "s",
            at_most(3.0),
            note=f"split {split_s} s, {n:,} writes per side; broker restart to both nodes holding {2 * n:,}",
        )
    ]
