"""Timing helpers: bounded loops (in count *and* time), rates, percentiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

Op = Callable[[int], Awaitable[object]]


@dataclass
class Rate:
    ops: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


async def run_seq(op: Op, max_n: int, max_s: float, start: int = 0) -> Rate:
    """Await ``op(i)`` one after the other until ``max_n`` ops or ``max_s`` seconds."""
    now = time.perf_counter
    t0 = now()
    deadline = t0 + max_s
    n = 0
    while n < max_n:
        await op(start + n)
        n += 1
        if not n & 63 and now() > deadline:
            break
    return Rate(n, now() - t0)


async def run_concurrent(op: Op, tasks: int, max_n: int, max_s: float, start: int = 0) -> Rate:
    """``tasks`` tasks share a counter and await ``op(i)`` until ``max_n``/``max_s``."""
    now = time.perf_counter
    done = 0
    t0 = now()
    deadline = t0 + max_s

    async def worker():
        nonlocal done
        while done < max_n and now() < deadline:
            i = done
            done += 1
            await op(start + i)

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
    return Rate(done, now() - t0)


async def rounds(run: Callable[[int], Awaitable[Rate]], n_rounds: int) -> tuple[float, str]:
    """Run ``run(round_no)`` ``n_rounds`` times; return the median rate and a note."""
    rates = [await run(r) for r in range(n_rounds)]
    per_s = [r.per_s for r in rates]
    med = statistics.median(per_s)
    ops = sum(r.ops for r in rates)
    if n_rounds > 1:
        note = f"median of {n_rounds} rounds ({min(per_s):,.0f}-{max(per_s):,.0f}), {ops:,} ops"
    else:
        note = f"{ops:,} ops in {rates[0].seconds:.2f} s"
    return med, note


def percentile(sorted_xs: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list, ``q`` in [0, 100]."""
    if not sorted_xs:
        raise ValueError("no samples")
    k = max(0, min(len(sorted_xs) - 1, round(q / 100 * (len(sorted_xs) - 1))))
    return sorted_xs[k]


async def watch_latencies(writer, watcher, n: int, warm: int, timeout: float) -> list[float]:
    """Latencies in ms, sorted: from before ``writer.set`` until ``watcher``'s watch
    iterator yields that value; one write at a time, ``warm`` writes not counted."""
    from distkv.util import P

    path = P("b.watch.k")
    now = time.perf_counter
    got_send, got_recv = trio.open_memory_channel(10)
    lat: list[float] = []
    async with trio.open_nursery() as nursery, watcher.watch(P("b.watch"), fetch=False) as w:

        async def listen():
            async for ev in w:
                t = now()
                if "path" in ev and "value" in ev:
                    await got_send.send((ev.value, t))

        nursery.start_soon(listen)
        # the watch is registered asynchronously (and a peer may still be syncing):
        # write until the watcher sees something
        with trio.fail_after(10):
            while True:
                await writer.set(path, -1)
                with trio.move_on_after(0.05):
                    await got_recv.receive()
                    break
        while True:  # drain stragglers
            try:
                got_recv.receive_nowait()
            except trio.WouldBlock:
                break
        with trio.fail_after(timeout):
            for i in range(warm + n):
                t0 = now()
                await writer.set(path, i)
                while True:
                    v, t = await got_recv.receive()
                    if v == i:
                        break
                if i >= warm:
                    lat.append((t - t0) * 1000)
        nursery.cancel_scope.cancel()
    lat.sort()
    return lat
