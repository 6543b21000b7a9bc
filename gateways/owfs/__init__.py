"""1-wire sensors into the tree: poll an ``owserver``, write what changed.

``distkv-gateway owfs`` runs :func:`serve`. Every ``interval`` seconds it lists the
devices on the bus and, for each device whose family code (``28`` in
``28.000028D70100``) is a key of ``attributes``, reads those attributes. A reading
lands at ``<path>.<device id>.<attribute>`` (one path element each, so the CLI spells
it ``onewire.28:.000028D70100.temperature``), typed: numeric text becomes a float,
anything else stays a stripped string. ``<path>.<device id>.present`` is True while
the device is listed and False once it is gone.

Only changes are written: a house full of sensors that read the same value every
10 seconds would otherwise rewrite every entry, and replicate it to every node, all
the time. "Changed" compares with the last value this gateway wrote or, after a
restart, with what is in the tree already; so restarting the gateway (or the machine)
writes nothing new, and a device that disappeared while the gateway was down still
gets ``present: False``. Run one gateway per ``path``: two gateways sharing a subtree
would each take the other's devices for gone.

Failures never stop the loop. A device whose read fails is logged once (and again
when it recovers); its other values and all other devices carry on. An owserver that
is down is logged once and retried every interval; the tree keeps the last values.
Errors talking to DistKV are not handled here: they end the gateway, and its service
manager restarts it (cheap, as above).

The decision "what to write" is :class:`Tracker`, which does no I/O; :func:`serve`
only feeds it readings and carries out its answer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from distkv.exceptions import ConfigError, DistKVError
from distkv.util import P, Path
from hw.onewire import OneWire, OneWireError, OwserverBus

__all__ = ["DEFAULTS", "PRESENT", "Changes", "Tracker", "check_config", "serve", "typed_value"]

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 4304,
    "path": "onewire",
    "interval": 10.0,
    # family code -> attributes to read; a family with [] is skipped
    "attributes": {"10": ["temperature"], "28": ["temperature"]},
}

#: The per-device entry that says whether the device is on the bus.
PRESENT = "present"

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def typed_value(text: str) -> Any:
    """The value to store for one raw reading.

    Numeric text becomes a float, integers included ("  85" -> 85.0): a temperature
    that happens to be whole must not flip the entry's type between int and float.
    owfs' non-numbers ("nan", "inf") stay strings, since NaN never equals itself and
    would count as a change on every poll. Everything else is the stripped text.
    """
    s = text.strip()
    if _NUMBER.fullmatch(s):
        value = float(s)
        if math.isfinite(value):
            return value
    return s


def _same(a: Any, b: Any) -> bool:
    # type-aware: True == 1.0 in Python, but a bool in the tree is not our float reading
    return type(a) is type(b) and a == b


def _family(device: str) -> str:
    return device.split(".", 1)[0].upper()


@dataclass
class Changes:
    """What one poll means: entries to write (relative to the gateway's path, in
    order) and what to log."""

    writes: list[tuple[tuple[str, str], Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # device -> error, newly failing
    recovered: list[str] = field(default_factory=list)  # devices readable again
    reachable_again: bool = False  # the owserver answers again after an outage


class Tracker:
    """The gateway's memory, without I/O: what was last written, which devices are
    present, which ones are failing, whether the owserver is down.

    ``known`` seeds it with ``((device, name), value)`` pairs found in the tree, so a
    restarted gateway only writes what differs from the tree.
    """

    def __init__(
        self,
        attributes: Mapping[str, Sequence[str]],
        known: Iterable[tuple[tuple[str, str], Any]] = (),
    ) -> None:
        self.attributes = {str(f).upper(): tuple(a) for f, a in attributes.items()}
        self.values: dict[tuple[str, str], Any] = {}
        self.present: dict[str, bool] = {}
        self.failing: dict[str, str] = {}
        self.outage: str | None = None
        for (device, name), value in known:
            if not self.wanted(device):
                continue
            if name == PRESENT:
                self.present[device] = value is True
            else:
                self.values[device, name] = value

    def wanted(self, device: str) -> tuple[str, ...]:
        """The attributes to read from this device (none: not ours)."""
        return self.attributes.get(_family(device), ())

    def lost(self, error: str) -> bool:
        """The owserver could not be reached; True if that is news (log it)."""
        news = self.outage is None
        self.outage = error
        return news

    def update(
        self,
        seen: Iterable[str],
        readings: Mapping[tuple[str, str], str],
        errors: Mapping[str, str] | None = None,
    ) -> Changes:
        """Digest one successful poll: ``seen`` is the device listing, ``readings``
        maps ``(device, attribute)`` to raw text, ``errors`` maps devices whose reads
        failed to the error. The returned writes are assumed to be carried out."""
        errors = errors or {}
        ch = Changes(reachable_again=self.outage is not None)
        self.outage = None
        seen = {d for d in seen if self.wanted(d)}
        for device in sorted(seen):
            if self.present.get(device) is not True:
                self.present[device] = True
                ch.writes.append(((device, PRESENT), True))
            for attr in self.wanted(device):
                if (device, attr) not in readings:
                    continue
                value = typed_value(readings[device, attr])
                key = (device, attr)
                if key not in self.values or not _same(self.values[key], value):
                    self.values[key] = value
                    ch.writes.append((key, value))
            if device in errors:
                if device not in self.failing:
                    ch.failed[device] = errors[device]
                self.failing[device] = errors[device]
            elif self.failing.pop(device, None) is not None:
                ch.recovered.append(device)
        for device in sorted(self.present):
            if device not in seen and self.present[device]:
                self.present[device] = False
                ch.writes.append(((device, PRESENT), False))
                # a device that comes back is a new start: report its errors afresh
                self.failing.pop(device, None)
        return ch


def check_config(cfg: Mapping) -> dict:
    """The gateway's section, checked and normalised; ConfigError if unusable.

    Family codes are upper-case strings. YAML reads an unquoted ``28:`` as the integer
    28 (and ``05`` as 5): such keys are taken as the digits the user typed, zero-padded.
    """
    out = dict(cfg)
    where = "gateways.owfs"
    if not isinstance(out.get("host"), str) or not out["host"]:
        raise ConfigError(f"{where}.host must be a host name")
    port = out.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"{where}.port must be a TCP port number, not {port!r}")
    interval = out.get("interval")
    if (
        not isinstance(interval, int | float)
        or isinstance(interval, bool)
        or not math.isfinite(interval)
        or interval <= 0
    ):
        raise ConfigError(f"{where}.interval must be a positive number of seconds")
    try:
        out["path"] = P(out.get("path"))
    except (DistKVError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.path: {exc}") from None
    attrs = out.get("attributes")
    if not isinstance(attrs, Mapping):
        raise ConfigError(f"{where}.attributes must map family codes to attribute lists")
    families: dict[str, tuple[str, ...]] = {}
    for fam, names in attrs.items():
        if isinstance(fam, int) and not isinstance(fam, bool) and 0 <= fam < 100:
            key = f"{fam:02d}"
        elif isinstance(fam, str) and re.fullmatch(r"[0-9A-Fa-f]{2}", fam):
            key = fam.upper()
        else:
            raise ConfigError(f"{where}.attributes: {fam!r} is not a family code (like 28)")
        if names is None:
            names = []
        elif isinstance(names, str):
            names = [names]
        if not isinstance(names, list | tuple):
            raise ConfigError(f"{where}.attributes.{key} must be a list of attribute names")
        for name in names:
            if (
                not isinstance(name, str)
                or not name
                or name.startswith("/")
                or ".." in name.split("/")
                or name == PRESENT
            ):
                raise ConfigError(f"{where}.attributes.{key}: bad attribute {name!r}")
        families[key] = tuple(names)
    out["attributes"] = families
    return out


async def _known(client, root: Path) -> list[tuple[tuple[str, str], Any]]:
    """What the tree holds below ``root`` at depth two: (device, name) -> value."""
    out = []
    async for entry in client.get_tree(root, min_depth=2, max_depth=2):
        device, name = entry.path
        if isinstance(device, str) and isinstance(name, str) and "value" in entry:
            out.append(((device, name), entry.value))
    return out


async def poll_once(client, bus: OneWire, root: Path, tracker: Tracker, where: str) -> None:
    """One poll: list, read, hand the readings to the tracker, write its answer."""
    try:
        devices = await bus.devices()
    except OneWireError as exc:
        if tracker.lost(str(exc)):
            logger.warning("%s; retrying every poll, quietly until it answers", exc)
        return
    readings: dict[tuple[str, str], str] = {}
    errors: dict[str, str] = {}
    for device in devices:
        for attr in tracker.wanted(device):
            try:
                readings[device, attr] = await bus.read(device, attr)
            except OneWireError as exc:
                if exc.unreachable:  # gone in the middle of a poll: an outage
                    if tracker.lost(str(exc)):
                        logger.warning("%s; retrying every poll, quietly until it answers", exc)
                    return
                errors[device] = str(exc)
                break  # the device is in trouble: try its other attributes next time
    ch = tracker.update(devices, readings, errors)
    if ch.reachable_again:
        logger.warning("%s: reachable again", where)
    for device, error in ch.failed.items():
        logger.warning("1-wire device %s: %s (not repeated until it recovers)", device, error)
    for device in ch.recovered:
        logger.warning("1-wire device %s: readable again", device)
    for key, value in ch.writes:
        if key[1] == PRESENT:
            logger.info("1-wire device %s %s", key[0], "present" if value else "gone")
        await client.set(root + key, value)


async def serve(
    client,
    cfg: Mapping,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    bus: OneWire | None = None,
) -> None:
    """Poll the bus every ``cfg["interval"]`` seconds until cancelled.

    ``bus`` replaces the owserver given by ``host``/``port`` (tests pass a
    :class:`~hw.onewire.SimulatedBus`). ``task_status.started()`` is called once the
    first poll is done, whether or not the owserver answered. A ConfigError comes out
    before that; errors from DistKV (``client.set``) end the gateway.
    """
    cfg = check_config(cfg)
    root: Path = cfg["path"]
    interval = float(cfg["interval"])
    own_bus = bus is None
    if bus is None:
        bus = OwserverBus(cfg["host"], cfg["port"])
    where = str(bus)
    try:
        tracker = Tracker(cfg["attributes"], known=await _known(client, root))
        started = False
        while True:
            t0 = trio.current_time()
            await poll_once(client, bus, root, tracker, where)
            await bus.idle()
            if not started:
                task_status.started()
                started = True
            # a fixed rhythm; a poll that overruns is followed by the next at once
            await trio.sleep_until(t0 + interval)
    finally:
        if own_bus:
            await bus.aclose()
