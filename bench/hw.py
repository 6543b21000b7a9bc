"""Hardware benchmarks (#10): the 1-wire gateway's CPU cost, GPIO edge latency.

Both run the real gateway code (``gateways.owfs.serve``, ``hw.gpiogw.serve``) in this
process against a bench server, with the simulated bus / chip standing in for the
hardware, so what is measured is DistKV's part: polling logic, the tracker, client
writes. Each has a baseline row of the same run that does the same tree traffic
without the gateway.
"""

from __future__ import annotations

import os
import random
import time

import trio

from . import Result, at_most, benchmark
from .measure import percentile

NSENSORS = 100


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sensors():
    from hw.onewire import SimulatedBus

    ids = [f"28.{i:012X}" for i in range(1, NSENSORS + 1)]
    return ids, SimulatedBus({d: {"temperature": "20.0"} for d in ids})


async def _measure_cpu(seconds: float, server_pid: int, body) -> tuple[float, float]:
    """CPU % of one core of this process and of the server while ``body`` runs."""
    async with trio.open_nursery() as n:
        await n.start(body)
        await trio.sleep(0.5)  # past the first poll
        c0, s0, w0 = time.process_time(), _cpu_s(server_pid), time.perf_counter()
        await trio.sleep(seconds)
        c1, s1, w1 = time.process_time(), _cpu_s(server_pid), time.perf_counter()
        n.cancel_scope.cancel()
    wall = w1 - w0
    return 100 * (c1 - c0) / wall, 100 * (s1 - s0) / wall


@benchmark(
    "hw_poll",
    group="hardware",
    rows=[
        ("owfs: poll 100 simulated sensors every 1 s, CPU of one core", "%", at_most(3)),
        ("baseline: 100 plain sets every 1 s, CPU of one core", "%", None),
    ],
    timeout=60,
)
async def bench_hw_poll(ctx) -> list[Result]:
    """The owfs gateway on a simulated bus of 100 DS18B20 whose readings all change
    every poll (worst case: 100 writes/s); CPU time of the gateway's process (this
    one) over wall time. Baseline: a loop doing the same 100 writes/s, no gateway."""
    from distkv.config import merge
    from distkv.util import P
    from gateways import owfs

    seconds = ctx.scale(10.0, 3.0)
    ids, bus = _sensors()
    rng = random.Random(1)
    cfg = merge(owfs.DEFAULTS, {"interval": 1.0, "conversion": 0.0, "path": "b.ow"})

    async def wiggle(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep(0.5)  # half-way between polls
        t0 = trio.current_time()
        while True:  # every reading changes between two polls (the simulation's cost
            for d in ids:  # is counted too: 100 random numbers/s, as in the baseline)
                bus.set(d, "temperature", f"{rng.uniform(15, 25):.4f}")
            t0 += 1.0
            await trio.sleep_until(t0)

    out = []
    async with ctx.server("bench-hw") as p, ctx.client(p) as c:

        async def gateway(*, task_status=trio.TASK_STATUS_IGNORED):
            async with trio.open_nursery() as n:
                await n.start(wiggle)
                await n.start(lambda task_status: owfs.serve(c, cfg, bus=bus, task_status=task_status))
                task_status.started()

        async def plain(*, task_status=trio.TASK_STATUS_IGNORED):
            paths = [P("b.plain") + (d, "temperature") for d in ids]
            task_status.started()
            while True:
                t0 = trio.current_time()
                for path in paths:
                    await c.set(path, rng.uniform(15, 25))
                await trio.sleep_until(t0 + 1)

        gw_cpu, gw_srv = await _measure_cpu(seconds, p.pid, gateway)
        base_cpu, base_srv = await _measure_cpu(seconds, p.pid, plain)
        polls = bus.listings
    out.append(
        Result(
            "owfs: poll 100 simulated sensors every 1 s, CPU of one core",
            gw_cpu,
            "%",
            at_most(3),
            note=f"{seconds:g} s, {polls} polls, 100 changed readings each; server {gw_srv:.1f} %",
        )
    )
    out.append(
        Result(
            "baseline: 100 plain sets every 1 s, CPU of one core",
            base_cpu,
            "%",
            None,
            note=f"same client, no gateway; server {base_srv:.1f} %",
        )
    )
    return out


@benchmark(
    "hw_gpio_latency",
    group="hardware",
    rows=[
        ("GPIO input edge -> tree watcher p50 (simulated chip)", "ms", at_most(2)),
        ("GPIO input edge -> tree watcher p99 (simulated chip)", "ms", None),
        ("baseline: set -> tree watcher p50, same run", "ms", None),
    ],
    timeout=60,
)
async def bench_hw_gpio_latency(ctx) -> list[Result]:
    """The GPIO gateway (debounce 0) on a simulated chip: time from driving the input
    until a watcher on another connection sees the level. Baseline: the same
    watcher, the level written with a plain set."""
    from distkv.config import merge
    from distkv.util import P
    from hw import gpiogw
    from hw.gpio import SimulatedChip

    n = ctx.scale(1000, 200)
    warm = ctx.scale(100, 20)
    chip = SimulatedChip()
    cfg = merge(
        gpiogw.DEFAULTS,
        {"simulated": True, "path": "b.gpio", "inputs": {"button": {"line": 4, "debounce": 0}}},
    )
    path = P("b.gpio.button")
    now = time.perf_counter

    async with ctx.server("bench-gpio") as p, ctx.client(p) as gwc, ctx.client(p) as watcher:

        async def measure(change) -> list[float]:
            lat = []
            async with watcher.watch(path, fetch=True, max_depth=0) as w:
                it = w.__aiter__()
                async for m in it:
                    if m.get("state") == "uptodate":
                        break
                level = chip.level(4)
                with trio.fail_after(60):
                    for i in range(warm + n):
                        level = not level
                        t0 = now()
                        await change(level)
                        async for m in it:
                            if m.get("value") is level:
                                break
                        if i >= warm:
                            lat.append((now() - t0) * 1000)
            lat.sort()
            return lat

        async def drive(level):
            chip.drive(4, level)

        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: gpiogw.serve(gwc, cfg, chip=chip, task_status=task_status))
            edge = await measure(drive)
            nursery.cancel_scope.cancel()

        async def set_it(level):
            chip.physical[4] = level  # keep measure()'s idea of the level in step
            await gwc.set(path, level)

        base = await measure(set_it)
    note = f"{len(edge)} edges, debounce 0, min {edge[0]:.3f} ms, max {edge[-1]:.3f} ms"
    return [
        Result(
            "GPIO input edge -> tree watcher p50 (simulated chip)",
            percentile(edge, 50),
            "ms",
            at_most(2),
            note=note,
        ),
        Result(
            "GPIO input edge -> tree watcher p99 (simulated chip)",
            percentile(edge, 99),
            "ms",
            None,
        ),
        Result(
            "baseline: set -> tree watcher p50, same run",
            percentile(base, 50),
            "ms",
            None,
            note=f"{len(base)} sets; the gateway adds edge delivery and debouncing",
        ),
    ]
