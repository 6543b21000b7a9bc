"""Persistence benchmarks: restart time from a state directory, snapshot time, and the
cost of the write log under each fsync policy (compared with no persistence)."""

from __future__ import annotations

import os
import tempfile
import time

import trio

from . import Result, at_least, at_most, benchmark
from .measure import rounds, run_concurrent, run_seq

N_STATE = 100_000


async def _node(ctx, name: str, *args: str, conf: dict | None = None, init: bool = True):
    """A node without replication; ``conf`` are ``-C`` overrides."""
    init_args = ("-i", "Testing") if init else ()
    return await ctx.pool.start_node(name, *args, *init_args, conf=conf)


async def _fill(c, n: int, prefix: str = "x") -> None:
    from distkv.util import P

    paths = [P(f"{prefix}.k{i}") for i in range(n)]

    async def op(i):
        await c.set(paths[i], i)

    await run_concurrent(op, 64, n, 600)


@benchmark(
    "persist_load",
    group="persistence",
    rows=[
        ("restart to serving, 100k entries in state dir", "s", at_most(0.8)),
        ("snapshot of 100k entries", "s", at_most(0.5)),
    ],
)
async def bench_persist_load(ctx) -> list[Result]:
    """Fill a node with a state dir, stop it (SIGTERM), time the restart to serving."""
    n = ctx.scale(N_STATE, 10_000)
    with tempfile.TemporaryDirectory(prefix="distkv-bench-state-") as d:
        p = await _node(ctx, "bench-state", "--state-dir", d)
        async with ctx.client(p) as c:
            await _fill(c, n)
        await ctx.stop(p)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        times = []
        for _ in range(ctx.scale(3, 1)):
            t0 = time.perf_counter()
            p = await _node(ctx, "bench-state", "--state-dir", d, init=False)
            async with ctx.client(p) as c:
                res = await c.get_state()
                t = time.perf_counter() - t0
                assert res.entries >= n, res
            times.append(t)
            await ctx.stop(p)
    snap = await trio.to_thread.run_sync(_snapshot_time, n)
    times.sort()
    return [
        Result(
            "restart to serving, 100k entries in state dir",
            times[len(times) // 2],
            "s",
            at_most(0.8),
            note=f"{n:,} entries, {size / 1e6:.1f} MB on disk; spawn to 'Running.' + get_state",
        ),
        Result(
            "snapshot of 100k entries",
            snap,
            "s",
            at_most(0.5),
            note=f"{n:,} entries, incl. fsync+rename",
        ),
    ]


def _snapshot_time(n: int) -> float:
    from distkv.core.replica import Replica
    from distkv.storage.statedir import StateDir
    from distkv.util import P

    r = Replica("snap")
    for i in range(n):
        r.local_write(P(f"x.k{i}"), i, 1_700_000_000_000)
    r.outbox.clear()
    with tempfile.TemporaryDirectory(prefix="distkv-bench-snap-") as d:
        sd = StateDir(d, fsync="always")

        async def go():
            t0 = time.perf_counter()
            await sd.snapshot(r)
            t = time.perf_counter() - t0
            await sd.aclose()
            return t

        return trio.run(go)


@benchmark(
    "persist_write",
    group="persistence",
    rows=[
        ("set, sequential, no persistence", "ops/s", None),
        ("set, sequential, fsync interval", "ops/s", None),
        ("set, sequential, fsync always", "ops/s", None),
        ("set, 64 tasks, fsync always", "ops/s", None),
    ],
)
async def bench_persist_write(ctx) -> list[Result]:
    """Sequential sets without persistence and with each fsync policy (same run)."""
    from distkv.util import P

    paths = [P(f"w.k{i}") for i in range(1000)]
    out = []
    base = None
    for label, policy, tasks in [
        ("no persistence", None, 1),
        ("fsync interval", "interval", 1),
        ("fsync always", "always", 1),
        ("fsync always", "always", 64),
    ]:
        with tempfile.TemporaryDirectory(prefix="distkv-bench-w-") as d:
            if policy is None:
                p = await _node(ctx, "bench-w")
            else:
                p = await _node(ctx, "bench-w", "--state-dir", d, conf={"server.fsync": policy})
            try:
                async with ctx.client(p) as c:

                    async def op(i):
                        await c.set(paths[i % 1000], i)

                    if tasks == 1:
                        await run_seq(op, 1000, 0.2)
                        rate, note = await rounds(
                            lambda r: run_seq(op, 100_000, ctx.scale(1.0, 0.3)), ctx.scale(3, 1)
                        )
                    else:
                        await run_concurrent(op, tasks, 2000, 0.2)
                        rate, note = await rounds(
                            lambda r, tasks=tasks: run_concurrent(
                                op, tasks, 300_000, ctx.scale(1.0, 0.3)
                            ),
                            ctx.scale(3, 1),
                        )
            finally:
                await ctx.stop(p)
        target = None
        if base is None:
            base = rate
        elif label == "fsync interval":
            target = at_least(round(0.9 * base))
            note += f"; target = 90% of no persistence ({base:,.0f})"
        name = f"set, {'sequential' if tasks == 1 else '64 tasks'}, {label}"
        out.append(Result(name, rate, "ops/s", target, note=note))
    return out
