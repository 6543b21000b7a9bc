"""The appliance's footprint (issue 12): what an idle node costs a small board.

- An idle node with 10k entries must not write to the disk (an SD card wears out, and
  every write wakes the card): ``write_bytes`` and ``syscw`` of ``/proc/PID/io`` over
  60 s, with persistence (a state dir, fsync ``interval``) and without. ``syscw``
  counts write syscalls of any kind (sockets too), so it also shows wake-ups that
  write something.
- Its RSS (``VmRSS``) and CPU (``/proc/PID/stat`` utime+stime) over the same minute.
- Start to READY on a lone node with an empty state dir: spawn until ``Running.``
  (printed together with READY=1).

Both idle nodes run at the same time, so one minute measures both.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import trio

from . import Result, at_most, benchmark
from .measure import run_concurrent

N_ENTRIES = 10_000
_ROWS = [
    ("idle node, 10k entries, persistence on: disk writes", "B/min", at_most(0)),
    ("idle node, 10k entries, persistence on: write syscalls", "1/min", None),
    ("idle node, 10k entries, no persistence: write syscalls", "1/min", None),
    ("idle node, 10k entries: RSS", "MB", at_most(40)),
    ("node with a runner service, state dir: disk writes", "B/min", None),
    ("idle node, 10k entries: CPU", "%", at_most(0.1)),
]
_START_ROWS = [
    ("lone node start to READY, empty state dir", "s", at_most(0.3)),
    ("lone node start to READY, no state dir (baseline)", "s", None),
    ("python -c 'import trio' (baseline, the floor)", "s", None),
]


def proc_io(pid: int) -> dict[str, int]:
    """``/proc/PID/io`` as a dict (write_bytes: what reached the block layer)."""
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = int(v)
    return out


def _import_trio() -> float:
    import subprocess
    import sys

    from .procs import child_env

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import trio"], check=True, env=child_env())
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fill(c, n: int) -> None:
    from distkv.util import P

    paths = [P(f"idle.k{i}") for i in range(n)]

    async def op(i):
        await c.set(paths[i], i)

    await run_concurrent(op, 64, n, 120)


@benchmark("idle", group="footprint", rows=_ROWS, timeout=150)
async def bench_idle(ctx) -> list[Result]:
    """Two lone nodes with 10k entries (one with a state dir), idle for 60 s: disk
    writes, write syscalls, RSS, CPU (from /proc)."""
    seconds = ctx.scale(60.0, 10.0)
    with tempfile.TemporaryDirectory(prefix="distkv-bench-idle-") as d:
        on = await ctx.pool.start_node("bench-idle-on", "-i", "Testing", "--state-dir", d)
        off = await ctx.pool.start_node("bench-idle-off", "-i", "Testing")
        d2 = tempfile.mkdtemp(prefix="distkv-bench-idle-", dir=d)
        svc = await ctx.pool.start_node("bench-idle-svc", "-i", "Testing", "--state-dir", d2,
                                        conf={"server.services": "[{kind: runner}]"})  # fmt: skip
        try:
            for p in (on, off):
                async with ctx.client(p) as c:
                    await _fill(c, N_ENTRIES)
                    st = await c.get_state()
                    if st.get("entries", 0) < N_ENTRIES:
                        raise RuntimeError(f"{p.name}: {st.get('entries')} entries")
            # let the last fsync interval and any snapshot pass: only idle time counts
            await trio.sleep(ctx.scale(5.0, 2.5))
            t0 = time.monotonic()
            io0 = {p.pid: proc_io(p.pid) for p in (on, off, svc)}
            cpu0 = cpu_seconds(off.pid)
            await trio.sleep(seconds)
            dt = time.monotonic() - t0
            io1 = {p.pid: proc_io(p.pid) for p in (on, off, svc)}
            cpu1 = cpu_seconds(off.pid)
            rss = max(on.rss(), off.rss())
        finally:
            await ctx.stop(on)
            await ctx.stop(off)
            await ctx.stop(svc)

    def per_min(p, key):
        return (io1[p.pid][key] - io0[p.pid][key]) * 60 / dt

    note = f"{dt:.0f} s idle after loading {N_ENTRIES:,} entries"
    return [
        Result(_ROWS[0][0], per_min(on, "write_bytes"), "B/min", at_most(0),
               note=f"{note}; fsync interval; /proc/PID/io write_bytes"),  # fmt: skip
        Result(_ROWS[1][0], per_min(on, "syscw"), "1/min", None,
               note=f"write syscalls, any fd; {per_min(on, 'wchar'):.0f} B/min written"),
        Result(_ROWS[2][0], per_min(off, "syscw"), "1/min", None,
               note=f"write syscalls, any fd; {per_min(off, 'wchar'):.0f} B/min written"),
        Result(_ROWS[3][0], rss / 2**20, "MB", at_most(40), note="VmRSS, the larger of the two"),
        Result(_ROWS[4][0], per_min(svc, "write_bytes"), "B/min", None,
               note=f"{per_min(svc, 'syscw'):.0f} write syscalls/min: the runner's heartbeat,"
               " a tree write every second"),  # fmt: skip
        Result(_ROWS[5][0], (cpu1 - cpu0) / dt * 100, "%", at_most(0.1),
               note=f"no persistence; {(cpu1 - cpu0) * 1e3:.0f} ms CPU in {dt:.0f} s"),  # fmt: skip
    ]


@benchmark("start_ready", group="footprint", rows=_START_ROWS, timeout=60)
async def bench_start_ready(ctx) -> list[Result]:
    """`distkv server -i Testing --state-dir EMPTY NAME` from spawn to "Running."
    (printed with READY=1), interleaved with the same without a state dir; median of 7.
    The note gives the node's own CPU time until then (less noisy than wall time on a
    shared box)."""
    walls: dict[bool | None, list[float]] = {True: [], False: [], None: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    for i in range(ctx.scale(7, 2)):
        for with_dir in (True, False):
            with tempfile.TemporaryDirectory(prefix="distkv-bench-start-") as d:
                args = ("--state-dir", d) if with_dir else ()
                p = await ctx.pool.start_node(f"bench-ready{i}", "-i", "Testing", *args)
                walls[with_dir].append(p.start_s)
                cpus[with_dir].append(cpu_seconds(p.pid))
                await ctx.stop(p)
        walls[None].append(await trio.to_thread.run_sync(_import_trio))
    out = []
    for (metric, unit, target), with_dir in zip(_START_ROWS, (True, False, None), strict=True):
        ts = sorted(walls[with_dir])
        if with_dir is None:
            out.append(Result(metric, statistics.median(ts), unit, target,
                              note=f"median of {len(ts)}: what every node pays before its own work"))  # fmt: skip
            continue
        cpu = statistics.median(cpus[with_dir]) * 1e3
        out.append(
            Result(
                metric,
                statistics.median(ts),
                unit,
                target,
                note=f"median of {len(ts)} ({ts[0]:.3f}-{ts[-1]:.3f}); spawn to 'Running.';"
                f" its CPU until then {cpu:.0f} ms",
            )
        )
    return out
