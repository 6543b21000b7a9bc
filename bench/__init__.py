"""DistKV benchmark suite: ``python -m bench`` (see bench/README.md).

A benchmark is an ``async def fn(ctx) -> list[Result]`` registered with
:func:`benchmark`. It gets a :class:`bench.runner.Context` (servers, clients, scale)
and returns one or more table rows. Benchmarks that cannot run yet are registered with
:func:`todo`: they show up in the table as "not available yet", never as fake numbers.

Registration order is table order. Modules that hold benchmarks are listed in
``MODULES`` and imported by the runner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Modules whose import registers benchmarks, in table order.
MODULES = [
    "bench.baseline",
    "bench.core",
    "bench.persist",
    "bench.auth",
    "bench.cluster",
    "bench.outage",
    "bench.apply",
    "bench.paced",
    "bench.cli",
    "bench.footprint",
    "bench.hw",
    "bench.gateway",
    "bench.web",
]


@dataclass(frozen=True)
class Target:
    """``value OP bound``, e.g. ``Target(">=", 9000)``."""

    op: str
    bound: float

    def ok(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        b = self.bound
        txt = f"{b:,.0f}" if b >= 100 else f"{b:g}"
        return f"{'≥' if self.op == '>=' else '≤'} {txt}"


def at_least(x: float) -> Target:
    return Target(">=", x)


def at_most(x: float) -> Target:
    return Target("<=", x)


@dataclass
class Result:
    """One table row. ``value=None`` means not measured (see ``note``)."""

    metric: str
    value: float | None
    unit: str
    target: Target | None = None
    note: str = ""
    bench: str = ""
    error: bool = False

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.value is None:
            return "n/a"
        if self.target is None:
            return ""
        return "ok" if self.target.ok(self.value) else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "target": None
            if self.target is None
            else {"op": self.target.op, "bound": self.target.bound},
            "status": self.status,
            "note": self.note,
        }


@dataclass
class Bench:
    name: str
    group: str
    fn: Callable[[Any], Awaitable[list[Result]]]
    doc: str = ""
    # rows a stub (or a failed benchmark) shows: (metric, unit, target)
    rows: list[tuple[str, str, Target | None]] = field(default_factory=list)
    timeout: float = 20  # seconds before the runner cancels it


BENCHMARKS: dict[str, Bench] = {}


def benchmark(
    name: str,
    *,
    group: str,
    rows: list[tuple[str, str, Target | None]] | None = None,
    timeout: float = 20,
):
    """Register ``async def fn(ctx) -> list[Result]`` under ``name``.

    ``rows`` (optional) names the rows the benchmark produces, so that an error can be
    shown against them.
    """

    def deco(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = Bench(
            name, group, fn, (fn.__doc__ or "").strip(), list(rows or []), timeout
        )
        return fn

    return deco


def todo(name: str, *, group: str, reason: str, rows: list[tuple[str, str, Target | None]]) -> None:
    """Register a placeholder: its rows print as "not available yet: <reason>".

    Replace it with a real :func:`benchmark` of the same name once the feature exists.
    """

    async def stub(ctx) -> list[Result]:
        return [Result(m, None, u, t, note=f"not available yet: {reason}") for m, u, t in rows]

    stub.__doc__ = f"TODO: {reason}"
    benchmark(name, group=group, rows=rows)(stub)
