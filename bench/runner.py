"""Run the selected benchmarks and print one table."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import threading
import time
import traceback
from contextlib import asynccontextmanager

import trio

from . import BENCHMARKS, MODULES, Bench, Result
from .procs import HOST, Proc, ProcessPool

# Bounds. A benchmark is bounded by its own limits well below its timeout; past it, it
# is cancelled (soft, after its ``timeout``, default 20 s). Code that cannot be cancelled (a shielded wait that never ends)
# is caught by the watchdog thread HARD_GRACE seconds later: it prints the table so far,
# kills our servers and exits. The whole run stops starting benchmarks after BUDGET.
HARD_GRACE = 5
BUDGET = {False: 720, True: 90}  # seconds, for full / --quick runs (a full run takes ~9 min)


def load() -> dict[str, Bench]:
    for m in MODULES:
        importlib.import_module(m)
    return BENCHMARKS


class Context:
    """What a benchmark gets: scale, process pool, servers, clients."""

    def __init__(self, pool: ProcessPool, quick: bool):
        self.pool = pool
        self.quick = quick
        self.warnings: list[str] = []

    def scale(self, full, quick):
        """``full`` normally, ``quick`` with --quick."""
        return quick if self.quick else full

    async def fresh_server(self, name: str = "bench-fresh", conf: dict | None = None) -> Proc:
        """A new node for this benchmark alone; stop it with :meth:`stop`.
        ``conf``: ``-C`` overrides."""
        return await self.pool.start_node(name, "-i", "Testing", conf=conf)

    async def stop(self, p: Proc) -> None:
        rc = p.process.poll()
        if rc is not None:  # it died by itself: that is a finding
            tail = p.stderr_tail(600).strip().splitlines()
            self.warnings.append(
                f"server {p.name} (pid {p.pid}) exited by itself, rc={rc}: {tail[-1] if tail else ''}"
            )
        await self.pool.stop(p)

    @asynccontextmanager
    async def server(self, name: str, conf: dict | None = None):
        """A fresh node for the duration of the block."""
        p = await self.fresh_server(name, conf)
        try:
            yield p
        finally:
            await self.stop(p)

    @asynccontextmanager
    async def client(self, p: Proc, **connect):
        """``connect``: more ``connect`` settings (e.g. ``busy_poll=0``)."""
        from distkv.client import open_client

        async with open_client(connect={"host": HOST, "port": p.port, **connect}) as c:
            yield c


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _fmt_value(r: Result) -> str:
    v = r.value
    if v is None:
        return "ERROR" if r.error else "n/a"
    if r.unit.endswith("/s") or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def format_table(results: list[Result]) -> str:
    head = ["metric", "value", "unit", "target", "status", "note"]
    rows = [
        [
            r.metric,
            _fmt_value(r),
            r.unit,
            "" if r.target is None else str(r.target),
            r.status,
            r.note,
        ]
        for r in results
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    right = {1}

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    out = [
        line(head),
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|",
    ]
    out += [line(row) for row in rows]
    return "\n".join(out)


def _rows(b: Bench, note: str, error: bool) -> list[Result]:
    rows = b.rows or [(b.name, "", None)]
    return [Result(m, None, u, t, note=note, bench=b.name, error=error) for m, u, t in rows]


class Watchdog:
    """Hard stop for a benchmark that ignores cancellation (runs in a thread)."""

    def __init__(self, pool: ProcessPool, results: list[Result], selected: list[Bench]):
        self.pool, self.results, self.selected = pool, results, selected
        self.timer: threading.Timer | None = None

    def arm(self, b: Bench | None, seconds: float) -> None:
        self.disarm()
        self.timer = threading.Timer(seconds, self._fire, (b, seconds))
        self.timer.daemon = True
        self.timer.start()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self, b: Bench | None, seconds: float) -> None:
        rows = list(self.results)
        if b is not None:
            rows += _rows(b, f"hung: not cancellable, killed after {seconds:.0f} s", True)
            for r in self.selected[self.selected.index(b) + 1 :]:
                rows += _rows(r, "skipped (an earlier benchmark hung)", True)
        print(format_table(rows), flush=True)
        what = f"benchmark {b.name}" if b is not None else "stopping the servers"
        print(f"watchdog: {what} hung; killed our servers and exited", file=sys.stderr, flush=True)
        self.pool.kill_all_sync()
        os._exit(3)


async def run_all(
    selected: list[Bench], quick: bool, pool: ProcessPool
) -> tuple[list[Result], list[str]]:
    ctx = Context(pool, quick)
    results: list[Result] = []
    watchdog = Watchdog(pool, results, selected)
    end = time.perf_counter() + BUDGET[quick]
    try:
        for b in selected:
            t0 = time.perf_counter()
            left = end - t0
            if left < 1:
                results.extend(_rows(b, f"skipped: run budget of {BUDGET[quick]} s used up", True))
                continue
            limit = min(b.timeout if not quick else min(b.timeout, 30), left)
            print(f"bench: {b.name} ...", file=sys.stderr, flush=True)
            res: list[Result] | None = None
            err = ""
            watchdog.arm(b, limit + HARD_GRACE)
            try:
                with trio.move_on_after(limit) as scope:
                    res = await b.fn(ctx)
                if scope.cancelled_caught:
                    err = f"timed out after {limit:.0f} s"
            except Exception as exc:  # noqa: BLE001 - report it in the table, go on
                traceback.print_exc()
                leaf = _leaf(exc)
                err = f"{type(leaf).__name__}: {leaf}"[:300]
            finally:
                watchdog.disarm()
            if res is None:
                res = _rows(b, err, True)
            for r in res:
                r.bench = b.name
            results.extend(res)
            print(
                f"bench: {b.name} done in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        watchdog.arm(None, 15)  # stopping servers must not hang either
        await pool.stop_all()
        watchdog.disarm()
    return results, ctx.warnings


def main(argv: list[str] | None = None) -> int:
    import argparse

    benches = load()
    p = argparse.ArgumentParser(
        prog="python -m bench", description="DistKV benchmarks (see bench/README.md)"
    )
    p.add_argument(
        "--quick", action="store_true", help="small counts, for a smoke run (about a minute)"
    )
    p.add_argument("--only", metavar="NAME[,NAME]", help="run only these benchmarks")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    a = p.parse_args(argv)

    if a.list:
        for b in benches.values():
            print(f"{b.name:22} {b.group:12} {b.doc.splitlines()[0] if b.doc else ''}")
        return 0
    selected = list(benches.values())
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in benches]
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}")
        selected = [benches[n] for n in names]

    load1 = os.getloadavg()[0]
    pool = ProcessPool()
    t0 = time.perf_counter()
    try:
        results, warnings = trio.run(run_all, selected, a.quick, pool)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        pool.kill_all_sync()
    wall = time.perf_counter() - t0

    print(format_table(results))
    print(
        f"({'quick' if a.quick else 'full'} run, {wall:.1f} s, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load avg {load1:.2f} at start; status: ok = meets target, MISS = does not)"
    )
    for w in warnings:
        print(f"warning: {w}")
    if load1 > 0.5:
        print(
            f"warning: the machine was busy (load avg {load1:.2f}) at start: numbers are low and noisy; "
            "compare them with the baseline rows"
        )
    if a.json:
        meta = {
            "quick": a.quick,
            "wall_s": round(wall, 2),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": load1,
            "warnings": warnings,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": [r.as_json() for r in results]}, f, indent=2)
    return 1 if any(r.error for r in results) else 0
