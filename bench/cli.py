"""The one-shot CLI: ``distkv client data x set -v : 1`` from process start to exit.

Shell scripts and Node-RED ``exec`` nodes start one process per value, so this is
their latency. ``python -c pass`` (the same interpreter) is measured in the same loop,
interleaved, as the floor of the day: on a busy box both grow. Both run with .pyc
files (written to a private cache by a warm-up run), as from an installed package.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import trio

from . import Result, at_most, benchmark
from .procs import HOST, distkv_cmd

ROW_PASS = "python -c pass (baseline, same run)"
ROW_SET = "one-shot CLI set (process start to exit)"


def _time_runs(cmds: dict[str, list[str]], env: dict, n: int) -> dict[str, list[float]]:
    """Wall time of each command, ``n`` times, interleaved (after one warm-up each)."""
    out: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(n + 1):
        for k, argv in cmds.items():
            t0 = time.perf_counter()
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
            dt = time.perf_counter() - t0
            if r.returncode:
                raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
            if i:
                out[k].append(dt)
    return out


def _row(name: str, xs: list[float], target=None) -> Result:
    xs = sorted(xs)
    ms = [x * 1e3 for x in xs]
    return Result(
        name,
        statistics.median(ms),
        "ms",
        target,
        note=f"median of {len(ms)} ({ms[0]:.0f}-{ms[-1]:.0f})",
    )


@benchmark(
    "cli_oneshot",
    group="cli",
    rows=[(ROW_PASS, "ms", None), (ROW_SET, "ms", at_most(150))],
    timeout=60,
)
async def bench_cli_oneshot(ctx) -> list[Result]:
    """`distkv client data x set -v : 1` as a new process, vs `python -c pass`; median."""
    n = ctx.scale(10, 3)
    async with ctx.server("bench-cli") as p:
        with tempfile.TemporaryDirectory(prefix="distkv-bench-cli-") as tmp:
            cfg = os.path.join(tmp, "distkv.cfg")
            with open(cfg, "w") as f:
                f.write(f"connect:\n  host: {HOST}\n  port: {p.port}\n")
            # With .pyc files, as an installed package has them: the warm-up run writes
            # them to a private cache, also where PYTHONDONTWRITEBYTECODE is set.
            env = dict(os.environ, DISTKV_CONFIG=cfg, PYTHONPYCACHEPREFIX=os.path.join(tmp, "pyc"))
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            cmds = {
                ROW_PASS: [sys.executable, "-c", "pass"],
                ROW_SET: [*distkv_cmd(), "client", "data", "x", "set", "-v", ":", "1"],
            }
            times = await trio.to_thread.run_sync(_time_runs, cmds, env, n)
        async with ctx.client(p) as c:
            if (await c.get("x")).get("value") != "1":
                raise RuntimeError("the CLI did not set x")
    return [_row(ROW_PASS, times[ROW_PASS]), _row(ROW_SET, times[ROW_SET], at_most(150))]
