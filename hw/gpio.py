"""Linux GPIO lines: a pure debouncer, an interface, the real driver, a simulated one.

Why the character device API (``/dev/gpiochipN`` through the ``gpiod`` 2.x bindings
from PyPI): sysfs GPIO is deprecated and RPi.GPIO is board-specific; libgpiod works on
every Linux board and delivers edges as kernel events with timestamps, so nothing
polls. ``gpiod`` is an optional dependency (``pip install 'distkv[gpio]'``): it is
imported only when a real chip is opened, and its absence is a one-line
:class:`GpioError` saying how to install it, never an import crash.

Everything above the driver talks to :class:`Lines` (what one request of lines can
do: wait for edges, read, write), so the same code runs against
:class:`SimulatedChip` (tests, benchmarks, machines without GPIO) and
:class:`GpiodChip`. Lines are addressed by the names the configuration gives them
(``button``, ``relay``); offsets only matter to the driver.

:class:`Debouncer` decides, without I/O, which level changes are real: a level counts
once it has held for the debounce time, so contact bounce never reaches the tree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from distkv.exceptions import DistKVError

__all__ = [
    "Debouncer",
    "Edge",
    "GpioError",
    "GpiodChip",
    "Lines",
    "LineSpec",
    "SimulatedChip",
    "gpiod_config",
    "import_gpiod",
]

INSTALL_HINT = "GPIO needs the gpiod package (libgpiod 2 bindings): pip install 'distkv[gpio]'"


class GpioError(DistKVError):
    """A GPIO chip or line could not be used (missing package, no such chip, busy)."""

    code = "gpio"


def import_gpiod() -> Any:
    """The ``gpiod`` module, or a one-line GpioError saying how to install it."""
    try:
        import gpiod
    except ImportError:
        raise GpioError(INSTALL_HINT) from None
    version = getattr(gpiod, "__version__", "2")
    if not version or int(str(version).split(".")[0]) < 2:
        raise GpioError(f"gpiod {version} is too old; {INSTALL_HINT}")
    return gpiod


@dataclass(frozen=True)
class LineSpec:
    """One configured line: its offset on the chip and how to drive or read it."""

    line: int
    output: bool = False
    active_low: bool = False
    bias: str = "as-is"  # as-is, pull-up, pull-down, disabled
    initial: bool = False  # outputs: level at request time


@dataclass(frozen=True)
class Edge:
    """A level change of an input: its name, new (logical) level, monotonic time (s)."""

    name: str
    level: bool
    time: float


class Debouncer:
    """Which raw level changes of one input are real. Pure: times are passed in.

    :meth:`feed` takes every raw level with its time and returns the time at which
    :meth:`settle` should be called (None when nothing is pending); :meth:`settle`
    returns the new level once the raw level has held for ``debounce`` seconds
    without a change, else None. Invariant: a reported level was the raw level
    throughout the ``debounce`` seconds before it was reported, so a pulse shorter
    than that is never reported. With ``debounce == 0`` every change is reported by
    :meth:`feed`'s caller calling :meth:`settle` at once.
    """

    def __init__(self, debounce: float, level: bool | None = None) -> None:
        if not debounce >= 0 or not math.isfinite(debounce):
            raise ValueError(f"debounce must be >= 0 seconds, not {debounce!r}")
        self.debounce = debounce
        self.reported = level  # the level the tree has
        self.raw = level
        self.since = -math.inf  # when the raw level last changed

    def feed(self, level: bool, t: float) -> float | None:
        if level != self.raw:
            self.raw, self.since = level, t
        if self.raw == self.reported:
            return None
        return self.since + self.debounce

    def settle(self, now: float) -> bool | None:
        if self.raw is None or self.raw == self.reported:
            return None
        if now - self.since < self.debounce:
            return None
        self.reported = self.raw
        return self.raw


class Lines:
    """One request of lines on a chip, by name. Implementations: SimulatedChip's and
    GpiodChip's. Safe for one task waiting on edges while others read and write."""

    specs: Mapping[str, LineSpec]

    async def edges(self) -> list[Edge]:
        """Wait for input level changes; the ones that happened since the last call."""
        raise NotImplementedError

    def get(self, name: str) -> bool:
        """The logical level of a line (active_low already applied)."""
        raise NotImplementedError

    def set(self, name: str, level: bool) -> None:
        """Drive an output line to a logical level."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the lines."""

    def _spec(self, name: str, output: bool | None = None) -> LineSpec:
        try:
            spec = self.specs[name]
        except KeyError:
            raise GpioError(f"no GPIO line called {name!r} (known: {', '.join(self.specs)})") from None
        if output is True and not spec.output:
            raise GpioError(f"GPIO line {name!r} is an input; it cannot be set")
        return spec


class SimulatedChip:
    """A GPIO chip in memory with the same interface as :class:`GpiodChip`.

    Tests and benchmarks change inputs with :meth:`drive` (a raw, physical level,
    timestamped with trio's clock, so contact bounce is a series of drives) and look
    at outputs with :meth:`level`. Several requests of one chip see the same lines.
    """

    def __init__(self, name: str = "simulated") -> None:
        self.name = name
        self.physical: dict[int, bool] = {}
        self._requests: list[_SimLines] = []

    def request(self, specs: Mapping[str, LineSpec], consumer: str = "distkv") -> Lines:
        taken = {s.line for r in self._requests for s in r.specs.values()}
        for name, spec in specs.items():
            if spec.line in taken:
                raise GpioError(f"{self.name}: line {spec.line} ({name}) is busy")
            if spec.output:
                self.physical[spec.line] = spec.initial != spec.active_low
            else:
                self.physical.setdefault(spec.line, spec.bias == "pull-up")
        lines = _SimLines(self, dict(specs))
        self._requests.append(lines)
        return lines

    def drive(self, line: int, physical: bool) -> None:
        """Set an input's physical level (a button, a bouncing contact)."""
        if self.physical.get(line) == physical:
            return
        self.physical[line] = physical
        t = trio.current_time()
        for r in self._requests:
            r._changed(line, physical, t)

    def level(self, line: int) -> bool:
        """The physical level of a line."""
        return self.physical.get(line, False)


class _SimLines(Lines):
    def __init__(self, chip: SimulatedChip, specs: dict[str, LineSpec]) -> None:
        self.chip = chip
        self.specs = specs
        self._by_line = {s.line: n for n, s in specs.items() if not s.output}
        self._pending: list[Edge] = []
        self._event = trio.Event()

    def _changed(self, line: int, physical: bool, t: float) -> None:
        name = self._by_line.get(line)
        if name is not None:
            self._pending.append(Edge(name, physical != self.specs[name].active_low, t))
            self._event.set()

    async def edges(self) -> list[Edge]:
        while not self._pending:
            await self._event.wait()
            self._event = trio.Event()
        out, self._pending = self._pending, []
        return out

    def get(self, name: str) -> bool:
        spec = self._spec(name)
        return self.chip.level(spec.line) != spec.active_low

    def set(self, name: str, level: bool) -> None:
        spec = self._spec(name, output=True)
        self.chip.physical[spec.line] = bool(level) != spec.active_low

    def close(self) -> None:
        if self in self.chip._requests:
            self.chip._requests.remove(self)


def gpiod_config(specs: Mapping[str, LineSpec], gpiod: Any | None = None) -> dict:
    """The ``config`` argument of ``gpiod.request_lines`` for these lines: offset ->
    LineSettings (inputs: both edges, bias; outputs: initial value). Debouncing is
    done by :class:`Debouncer`, since not every GPIO driver debounces in hardware."""
    gpiod = gpiod or import_gpiod()
    from gpiod.line import Bias, Direction, Value
    from gpiod.line import Edge as GEdge

    biases = {
        "as-is": Bias.AS_IS,
        "pull-up": Bias.PULL_UP,
        "pull-down": Bias.PULL_DOWN,
        "disabled": Bias.DISABLED,
    }
    config = {}
    for spec in specs.values():
        if spec.output:
            config[spec.line] = gpiod.LineSettings(
                direction=Direction.OUTPUT,
                active_low=spec.active_low,
                output_value=Value.ACTIVE if spec.initial else Value.INACTIVE,
            )
        else:
            config[spec.line] = gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=GEdge.BOTH,
                bias=biases[spec.bias],
                active_low=spec.active_low,
            )
    return config


class GpiodChip:
    """A real chip (``/dev/gpiochip0``) through gpiod 2.x. Edges are read when the
    request's file descriptor becomes readable (trio waits on it; no thread, no poll
    loop). Levels are logical: gpiod applies ``active_low``."""

    def __init__(self, path: str = "/dev/gpiochip0") -> None:
        self.path = path
        self.gpiod = import_gpiod()

    def request(self, specs: Mapping[str, LineSpec], consumer: str = "distkv") -> Lines:
        config = gpiod_config(specs, self.gpiod)
        try:
            req = self.gpiod.request_lines(self.path, consumer=consumer, config=config)
        except OSError as exc:
            raise GpioError(f"GPIO chip {self.path}: {exc.strerror or exc}") from None
        return _GpiodLines(req, dict(specs))


class _GpiodLines(Lines):
    def __init__(self, req: Any, specs: dict[str, LineSpec]) -> None:
        from gpiod.edge_event import EdgeEvent
        from gpiod.line import Value

        self.req = req
        self.specs = specs
        self._by_line = {s.line: n for n, s in specs.items()}
        self._rising = EdgeEvent.Type.RISING_EDGE
        self._value = Value

    async def edges(self) -> list[Edge]:
        while True:
            await trio.lowlevel.wait_readable(self.req.fd)
            events = self.req.read_edge_events()
            # kernel timestamps are CLOCK_MONOTONIC; the debouncer runs on trio's clock
            offset = trio.current_time() - time.monotonic()
            out = [
                Edge(
                    self._by_line[e.line_offset],
                    e.event_type == self._rising,
                    e.timestamp_ns / 1e9 + offset,
                )
                for e in events
                if e.line_offset in self._by_line
            ]
            if out:
                return out

    def get(self, name: str) -> bool:
        spec = self._spec(name)
        return self.req.get_value(spec.line) == self._value.ACTIVE

    def set(self, name: str, level: bool) -> None:
        spec = self._spec(name, output=True)
        self.req.set_value(spec.line, self._value.ACTIVE if level else self._value.INACTIVE)

    def close(self) -> None:
        self.req.release()
