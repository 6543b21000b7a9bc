"""Single-node DistKV benchmarks: start time, set/get throughput, watch latency, RSS."""

from __future__ import annotations

import statistics
import time

import trio

from . import Result, at_least, at_most, benchmark
from .measure import percentile, rounds, run_concurrent, run_seq, watch_latencies

TASKS = 64
NKEYS = 1000  # throughput benchmarks cycle over this many keys (paths built beforehand)


def _paths(prefix: str, n: int = NKEYS) -> list:
    from distkv.util import P

    return [P(f"{prefix}.k{i}") for i in range(n)]


@benchmark("start", group="core", rows=[("server start to serving", "s", at_most(0.3))])
async def bench_start(ctx) -> list[Result]:
    """Spawn `distkv server` until "Running." is read and a client ping succeeds."""
    times = []
    for i in range(ctx.scale(5, 2)):
        t0 = time.perf_counter()
        p = await ctx.fresh_server(f"bench-start{i}")
        try:
            async with ctx.client(p) as c:
                await c.ping()
            times.append(time.perf_counter() - t0)
        finally:
            await ctx.stop(p)
    times.sort()
    return [
        Result(
            "server start to serving",
            statistics.median(times),
            "s",
            at_most(0.3),
            note=f"median of {len(times)} ({times[0]:.3f}-{times[-1]:.3f}); spawn to 'Running.' + ping",
        )
    ]


async def _throughput(
    ctx, name: str, op_factory, tasks: int, target, busy_poll: int | None = None
) -> list[Result]:
    """``busy_poll``: set on both the server and the client (None: their default)."""
    conf = None if busy_poll is None else {"server.busy_poll": busy_poll}
    cconf = {} if busy_poll is None else {"busy_poll": busy_poll}
    async with ctx.server("bench-tp", conf) as p, ctx.client(p, **cconf) as c:
        op = await op_factory(c)
        max_s = ctx.scale(1.0, 0.3)
        n_rounds = ctx.scale(3, 1)
        if tasks == 1:
            await run_seq(op, 2000, 0.2)  # warm-up
            rate, note = await rounds(lambda r: run_seq(op, 100_000, max_s), n_rounds)
        else:
            await run_concurrent(op, tasks, 5000, 0.2)
            rate, note = await rounds(lambda r: run_concurrent(op, tasks, 300_000, max_s), n_rounds)
    return [Result(name, rate, "ops/s", target, note=note)]


async def _set_op(c, prefix):
    paths = _paths(prefix)

    async def op(i):
        await c.set(paths[i % NKEYS], i)

    return op


async def _get_op(c, prefix):
    paths = _paths(prefix)
    async with trio.open_nursery() as n:  # fill the keys
        for k in range(8):

            async def fill(k=k):
                for i in range(k, NKEYS, 8):
                    await c.set(paths[i], i)

            n.start_soon(fill)

    async def op(i):
        await c.get(paths[i % NKEYS])

    return op


@benchmark("set_seq", group="core", rows=[("set, sequential", "ops/s", at_least(9000))])
async def bench_set_seq(ctx):
    """Sequential `set` on one connection (1,000 keys, values are ints)."""
    return await _throughput(
        ctx, "set, sequential", lambda c: _set_op(c, "b.sseq"), 1, at_least(9000)
    )


@benchmark(
    "set_conc",
    group="core",
    rows=[(f"set, {TASKS} tasks on one connection", "ops/s", at_least(25000))],
)
async def bench_set_conc(ctx):
    """`set` from 64 concurrent tasks sharing one connection."""
    return await _throughput(
        ctx,
        f"set, {TASKS} tasks on one connection",
        lambda c: _set_op(c, "b.sconc"),
        TASKS,
        at_least(25000),
    )


@benchmark("get_seq", group="core", rows=[("get, sequential", "ops/s", at_least(12000))])
async def bench_get_seq(ctx):
    """Sequential `get` of existing keys on one connection."""
    return await _throughput(
        ctx, "get, sequential", lambda c: _get_op(c, "b.gseq"), 1, at_least(12000)
    )


@benchmark(
    "seq_nopoll",
    group="core",
    rows=[
        ("set, sequential, busy polling off", "ops/s", None),
        ("get, sequential, busy polling off", "ops/s", None),
    ],
)
async def bench_seq_nopoll(ctx):
    """`set_seq` and `get_seq` with `busy_poll: 0` on server and client: what a
    sequential client gets when both sides sleep between messages."""
    out = []
    for name, factory in (
        ("set, sequential, busy polling off", lambda c: _set_op(c, "b.snp")),
        ("get, sequential, busy polling off", lambda c: _get_op(c, "b.gnp")),
    ):
        out += await _throughput(ctx, name, factory, 1, None, busy_poll=0)
    return out


@benchmark(
    "seq_contended",
    group="core",
    rows=[
        ("set, sequential, CPU contended", "ops/s", None),
        ("set, sequential, CPU contended, busy polling off", "ops/s", None),
    ],
)
async def bench_seq_contended(ctx):
    """`set_seq` while a CPU-bound process competes for the cores, with busy polling
    at its default and off: polling must not make a shared box slower."""
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = []
        for name, bp in (
            ("set, sequential, CPU contended", None),
            ("set, sequential, CPU contended, busy polling off", 0),
        ):
            out += await _throughput(
                ctx, name, lambda c: _set_op(c, "b.scont"), 1, None, busy_poll=bp
            )
        return out
    finally:
        hog.kill()
        hog.wait()


@benchmark(
    "get_conc", group="core", rows=[(f"get, {TASKS} tasks on one connection", "ops/s", None)]
)
async def bench_get_conc(ctx):
    """`get` from 64 concurrent tasks sharing one connection (no target yet)."""
    return await _throughput(
        ctx, f"get, {TASKS} tasks on one connection", lambda c: _get_op(c, "b.gconc"), TASKS, None
    )


@benchmark(
    "watch_latency",
    group="core",
    rows=[
        ("watch latency p50, same node", "ms", at_most(0.3)),
        ("watch latency p99, same node", "ms", None),
    ],
)
async def bench_watch_latency(ctx) -> list[Result]:
    """Writer and watcher on two connections to one node: time from before `set` until
    the watcher's iterator yields the event (one write at a time)."""
    async with ctx.server("bench-watch") as p, ctx.client(p) as writer, ctx.client(p) as watcher:
        ms = await watch_latencies(
            writer, watcher, ctx.scale(3000, 300), ctx.scale(300, 50), ctx.scale(30, 10)
        )
    note = f"{len(ms)} writes, min {ms[0]:.3f} ms, max {ms[-1]:.3f} ms"
    return [
        Result("watch latency p50, same node", percentile(ms, 50), "ms", at_most(0.3), note=note),
        Result("watch latency p99, same node", percentile(ms, 99), "ms", None),
    ]


@benchmark("rss", group="core", rows=[("server RSS per entry", "B", at_most(300))])
async def bench_rss(ctx) -> list[Result]:
    """Fresh node; VmRSS before and after writing N entries x.k{i}=i (64 tasks)."""
    from distkv.util import P

    n = ctx.scale(100_000, 20_000)
    p = await ctx.fresh_server("bench-rss")
    try:
        async with ctx.client(p) as c:
            await c.ping()
            await trio.sleep(0.1)
            before = p.rss()
            t0 = time.perf_counter()
            nxt = 0

            async def writer():
                nonlocal nxt
                while nxt < n:
                    i = nxt
                    nxt += 1
                    await c.set(P(f"x.k{i}"), i)

            with trio.fail_after(40):
                async with trio.open_nursery() as nursery:
                    for _ in range(TASKS):
                        nursery.start_soon(writer)
            load_s = time.perf_counter() - t0
            st = await c.get_state()
            await trio.sleep(0.1)
            after = p.rss()
        if st.get("entries", 0) < n:
            raise RuntimeError(f"server reports {st.get('entries')} entries, expected >= {n}")
    finally:
        await ctx.stop(p)
    per = (after - before) / n
    return [
        Result(
            "server RSS per entry",
            per,
            "B",
            at_most(300),
            note=f"{n:,} entries, RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, loaded at {n / load_s:,.0f}/s",
        )
    ]
