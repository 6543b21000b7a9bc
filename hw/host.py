"""This host's hardware, for runner jobs: ``hw.gpio`` and ``hw.onewire``.

A runner started with ``distkv client run -n NODE all --hw`` (or ``-g GROUP``) opens
what the configuration says this host has, the same sections the gateways read:
``gateways.gpio`` (lines by name; the simulated chip with ``simulated: true``) and
``gateways.owfs`` (the first owserver). Jobs get it as the global ``hw``, so "a relay
follows a tree entry" or "a thermostat" is a few lines of stored code::

    await hw.gpio.follow("relay", client, P("home.kitchen.light"))

    while True:
        t = float(await hw.onewire.read("28.000028D70100", "temperature"))
        hw.gpio.set("heater", t < target)
        await trio.sleep(30)

Lines requested here are this process's: a GPIO gateway on the same host must not
configure the same lines (the kernel refuses a second request; the error says so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from distkv.util import P, Path

from . import gpiogw
from .gpio import Debouncer, Lines
from .onewire import OneWire, OwserverBus

__all__ = ["Gpio", "Hardware", "open_hardware"]


class Gpio:
    """Jobs' view of this host's GPIO lines, by configured name."""

    def __init__(self, lines: Lines, debounce: Mapping[str, float]) -> None:
        self.lines = lines
        self.debounce = dict(debounce)

    @property
    def names(self) -> list[str]:
        return sorted(self.lines.specs)

    def get(self, name: str) -> bool:
        """The logical level of a line."""
        return self.lines.get(name)

    def set(self, name: str, level: Any) -> None:
        """Drive an output (any value: its truth, "off"/"0"/"false" are off)."""
        self.lines.set(name, gpiogw._truth(level))

    async def follow(self, name: str, client: Any, path: Any) -> None:
        """Drive output ``name`` from tree entry ``path`` until cancelled."""
        path = path if isinstance(path, Path) else P(path) if isinstance(path, str) else Path.build(path)
        async with client.watch(path, fetch=True, max_depth=0) as w:
            async for m in w:
                if "path" in m and "value" in m:
                    self.set(name, m.value)

    async def levels(self, name: str) -> AsyncIterator[bool]:
        """The debounced levels of input ``name``: the current one, then each change.
        (One consumer of edges per process: use it from one job at a time.)"""
        deb = Debouncer(self.debounce.get(name, 0.02), self.lines.get(name))
        yield self.lines.get(name)
        while True:
            for edge in await self.lines.edges():
                if edge.name != name:
                    continue
                when = deb.feed(edge.level, edge.time)
                if when is None:
                    continue
                await trio.sleep_until(when)
                level = deb.settle(trio.current_time())
                if level is not None:
                    yield level


@dataclass
class Hardware:
    """What a runner's jobs see as ``hw``: None for what this host does not have."""

    gpio: Gpio | None = None
    onewire: OneWire | None = None


@asynccontextmanager
async def open_hardware(
    cfg: Mapping, *, chip: Any = None, bus: OneWire | None = None
) -> AsyncIterator[Hardware]:
    """Open this host's hardware as ``cfg["gateways"]`` describes it (``chip`` and
    ``bus`` replace the real ones, for tests). Settings are checked first: a bad
    section or a missing gpiod is a one-line error before anything is requested."""
    gateways = cfg.get("gateways") or {}
    hw = Hardware()
    lines = None
    if gateways.get("gpio"):
        from distkv.config import merge

        gcfg = gpiogw.check_config(merge(gpiogw.DEFAULTS, gateways["gpio"]))
        if gcfg["specs"]:
            lines = gpiogw.open_chip(gcfg, chip).request(gcfg["specs"], consumer="distkv-runner")
            hw.gpio = Gpio(lines, gcfg["debounce"])
    own_bus = None
    if bus is not None:
        hw.onewire = bus
    elif gateways.get("owfs"):
        from distkv.config import merge
        from gateways.owfs.config import DEFAULTS, check_config

        ocfg = check_config(merge(DEFAULTS, gateways["owfs"]))
        host, port = ocfg["servers"][0]
        hw.onewire = own_bus = OwserverBus(host, port)
    try:
        yield hw
    finally:
        if lines is not None:
            lines.close()
        if own_bus is not None:
            await own_bus.aclose()

