"""GPIO lines and the tree: inputs become entries, outputs follow entries.

``distkv-gateway gpio`` runs :func:`serve` with the ``gateways.gpio`` section::

    gateways:
      gpio:
        chip: /dev/gpiochip0
        path: home.gpio
        inputs:
          button: {line: 22, bias: pull-up, active_low: true, debounce: 0.03}
        outputs:
          relay: {line: 17, follow: home.kitchen.light}

An input's debounced logical level is written to ``<path>.<name>`` (or its own
``path``) as True/False when it changes. An output is driven to the truth of its
``follow`` entry whenever that changes, and the level it was driven to is written to
``<path>.<name>``. The section is checked against :data:`SCHEMA` before the chip is
opened; with ``simulated: true`` a :class:`~hw.gpio.SimulatedChip` stands in (tests,
machines without GPIO). Edge decisions are :class:`~hw.gpio.Debouncer`'s; this module
is the trio shell around it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import trio

from distkv.exceptions import ConfigError, DistKVError
from distkv.schema import Bool, Float, Int, Key, Nullable, OneOf, OpenSection, Section, Str, check
from distkv.schema import defaults as _defaults
from distkv.util import P, Path
from gateways.counters import GatewayCounters

from .gpio import Debouncer, GpiodChip, Lines, LineSpec, SimulatedChip

__all__ = ["DEFAULTS", "SCHEMA", "check_config", "open_chip", "serve"]

logger = logging.getLogger(__name__)
WHERE = "gateways.gpio"

_BIAS = OneOf("as-is", "pull-up", "pull-down", "disabled")

_INPUT = Section(
    {
        "line": Key(Int(min=0), None, "line offset on the chip"),
        "path": Key(Nullable(Str()), None, "tree entry (default: <path>.<name>)"),
        "debounce": Key(Float(min=0, max=10), 0.02, "seconds a level must hold to count"),
        "bias": Key(_BIAS, "as-is", "pull-up, pull-down, disabled or as-is"),
        "active_low": Key(Bool(), False, "the line is active (True) when low"),
    }
)
_OUTPUT = Section(
    {
        "line": Key(Int(min=0), None, "line offset on the chip"),
        "follow": Key(Nullable(Str()), None, "tree entry the output follows"),
        "path": Key(Nullable(Str()), None, "where the driven level goes (<path>.<name>)"),
        "active_low": Key(Bool(), False, "the line is active (True) when low"),
        "initial": Key(Bool(), False, "level when the line is requested"),
    }
)

SCHEMA = Section(
    {
        "chip": Key(Str(), "/dev/gpiochip0", "GPIO character device"),
        "simulated": Key(Bool(), False, "use an in-memory chip (tests, no GPIO here)"),
        "path": Key(Str(), "gpio", "tree path for lines without their own path"),
        "inputs": Key(OpenSection(_INPUT), {}, "name -> input line"),
        "outputs": Key(OpenSection(_OUTPUT), {}, "name -> output line"),
    }
)

DEFAULTS: dict[str, Any] = _defaults(SCHEMA)


def _path(value: str, where: str) -> Path:
    try:
        return P(value)
    except (DistKVError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_config(cfg: Mapping) -> dict:
    """The section checked against :data:`SCHEMA` and normalised: ``specs`` (name ->
    :class:`~hw.gpio.LineSpec`), ``paths`` (name -> tree path of its level),
    ``follow`` (output name -> followed path), ``debounce`` (input name -> seconds).
    One-line ConfigError naming the key otherwise."""
    out = dict(cfg)
    for kind, schema in (("inputs", _INPUT), ("outputs", _OUTPUT)):
        if isinstance(out.get(kind), Mapping):  # name the line's own key in errors
            for name, d in out[kind].items():
                check(schema, d, f"{WHERE}.{kind}.{name}.")
    check(SCHEMA, out, WHERE + ".")
    root = _path(out["path"], f"{WHERE}.path")
    specs: dict[str, LineSpec] = {}
    paths: dict[str, Path] = {}
    follow: dict[str, Path] = {}
    debounce: dict[str, float] = {}
    lines: dict[int, str] = {}
    for kind in ("inputs", "outputs"):
        for name, d in out[kind].items():
            where = f"{WHERE}.{kind}.{name}"
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}: a line name must be a string")
            if name in specs:
                raise ConfigError(f"{where}: {name} is both an input and an output")
            if d.get("line") is None:
                raise ConfigError(f"{where}.line is missing")
            if d["line"] in lines:
                raise ConfigError(f"{where}.line: line {d['line']} is also {lines[d['line']]}")
            lines[d["line"]] = name
            output = kind == "outputs"
            specs[name] = LineSpec(
                d["line"],
                output=output,
                active_low=d.get("active_low", False),
                bias=d.get("bias", "as-is"),
                initial=d.get("initial", False),
            )
            own = d.get("path")
            paths[name] = _path(own, f"{where}.path") if own else root + (name,)
            if output and d.get("follow"):
                follow[name] = _path(d["follow"], f"{where}.follow")
            if not output:
                debounce[name] = d.get("debounce", 0.02)
    out.update(specs=specs, paths=paths, follow=follow, debounce=debounce)
    return out


def open_chip(cfg: Mapping, chip: Any = None) -> Any:
    """The chip to request lines from: ``chip`` if given, else simulated or gpiod
    (a one-line GpioError when gpiod is missing)."""
    if chip is not None:
        return chip
    if cfg["simulated"]:
        return SimulatedChip(cfg["chip"])
    return GpiodChip(cfg["chip"])


async def _write(client, path: Path, level: bool, counters: GatewayCounters) -> None:
    try:
        await client.set(path, level)
    except DistKVError:
        counters.add("write_errors")
        raise
    counters.add("writes")


async def _input_edges(client, lines: Lines, cfg: dict, counters: GatewayCounters) -> None:
    """Debounce input edges; write each settled level once."""
    deb = {n: Debouncer(t, lines.get(n)) for n, t in cfg["debounce"].items()}

    async def settle_at(name: str, when: float) -> None:
        await trio.sleep_until(when)
        level = deb[name].settle(trio.current_time())
        if level is not None:
            await _write(client, cfg["paths"][name], level, counters)

    async with trio.open_nursery() as nursery:
        while True:
            for edge in await lines.edges():
                counters.add("messages_in")
                when = deb[edge.name].feed(edge.level, edge.time)
                if when is None:
                    continue
                if when <= trio.current_time():
                    level = deb[edge.name].settle(trio.current_time())
                    if level is not None:
                        await _write(client, cfg["paths"][edge.name], level, counters)
                else:
                    nursery.start_soon(settle_at, edge.name, when)


async def _follow(
    client, lines: Lines, name: str, src: Path, dst: Path, counters: GatewayCounters, *,
    task_status,
) -> None:  # fmt: skip
    async with client.watch(src, fetch=True, max_depth=0) as w:
        async for m in w:
            if m.get("state") == "uptodate":
                task_status.started()
                continue
            if "path" not in m or "value" not in m:
                continue  # deleted: leave the output as it is
            level = _truth(m.value)
            lines.set(name, level)
            counters.add("commands")
            counters.add("messages_out")
            await _write(client, dst, level, counters)


def _truth(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "false", "off", "no")
    return bool(v)


async def serve(
    client,
    cfg: Mapping,
    *,
    chip: Any = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    counters: GatewayCounters | None = None,
) -> None:
    """Mirror the configured lines until cancelled; ``started()`` once the inputs'
    current levels are in the tree and the outputs follow their entries. It counts
    into ``counters`` (edges in, writes, outputs driven; devices online: the lines
    it holds; see gateways.counters)."""
    cfg = check_config(cfg)
    counters = counters or GatewayCounters()
    lines = open_chip(cfg, chip).request(cfg["specs"], consumer="distkv-gpio")
    counters.set("devices_online", len(cfg["specs"]))
    try:
        for name in cfg["debounce"]:
            await _write(client, cfg["paths"][name], lines.get(name), counters)
        async with trio.open_nursery() as nursery:
            for name, src in cfg["follow"].items():
                fn = functools.partial(
                    _follow, client, lines, name, src, cfg["paths"][name], counters
                )
                await nursery.start(fn)
            nursery.start_soon(_input_edges, client, lines, cfg, counters)
            task_status.started()
    finally:
        counters.set("devices_online", 0)
        lines.close()
