"""What the 1-wire gateway writes, decided without I/O: :class:`SensorTracker`.

The shell (:mod:`gateways.owfs`) lists the owservers, reads what :meth:`SensorTracker.plan`
says is due, hands everything to :meth:`SensorTracker.update` with the time, and carries
out the :class:`Changes` it gets back. Every rule of the gateway lives here, where it
can be tested with plain values and property tests:

- typing: numeric text is a float, anything else the stripped text (:func:`typed_value`);
- plausibility: per attribute ``min``/``max`` and ``drop`` values (the DS18B20's 85.0
  power-on reading); an implausible reading is not written but counted
  (``<name>.dropped``), and does not count as a fresh reading;
- deadband and rounding: a reading is rounded, and written only when it differs from
  the tree by more than the deadband, so the tree never differs from the last plausible
  (rounded) reading by more than the deadband;
- names: a device's tree name is its owserver alias when it has one, else its id;
- presence: ``present`` is True while a device is listed, False once a listing of its
  owserver lacks it; ``gone`` is written (or, with ``remove_gone``, every entry of the
  device deleted) once it has been unlisted for ``gone_after`` seconds;
- staleness: attributes without a fresh reading for ``stale_after`` intervals (read
  errors, an owserver that is down) are listed in ``<name>.stale`` and reported for the
  error tree; both are cleared when readings return;
- outputs: an output attribute whose read-back value differs from the desired one is
  written; if it still differs after that, the attribute is listed in
  ``<name>.mismatch`` until they agree.

Only changes are written, compared with what the tree holds (seeded with ``known``
at start), so restarting the gateway writes nothing new.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Changes", "Rule", "SensorTracker", "typed_value"]

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

PRESENT, STALE, GONE, DROPPED, MISMATCH = "present", "stale", "gone", "dropped", "mismatch"


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


def family(device: str) -> str:
    return device.split(".", 1)[0].upper()


@dataclass(frozen=True)
class Rule:
    """Plausibility, rounding and deadband of one attribute (numbers only)."""

    deadband: float = 0.0
    round: int | None = None
    min: float | None = None
    max: float | None = None
    drop: tuple[float, ...] = ()

    def plausible(self, value: Any) -> bool:
        if not isinstance(value, float):
            return True
        if value in self.drop:
            return False
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max

    def shape(self, value: Any) -> Any:
        if isinstance(value, float) and self.round is not None:
            return float(round(value, self.round))
        return value

    def moved(self, old: Any, new: Any) -> bool:
        """Does ``new`` differ from the tree's ``old`` enough to be written?"""
        if (
            self.deadband > 0
            and isinstance(old, float)
            and isinstance(new, float)
            and type(old) is type(new)
        ):
            return abs(new - old) > self.deadband
        return not _same(old, new)


@dataclass
class Changes:
    """One step's decisions: tree entries ``(name, entry)`` to write and to delete (in
    order), writes for devices' outputs, error-tree records to set (message) or clear
    (None) per tree name, lines to log, and how many readings were dropped as
    implausible (for the gateway's counters)."""

    writes: list[tuple[tuple[str, str], Any]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str, str]] = field(default_factory=list)  # device, attr, text
    errors: list[tuple[str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings
    info: list[str] = field(default_factory=list)
    refused: int = 0


@dataclass
class _Device:
    name: str
    server: int | None = None
    seen: float = 0.0  # last time a listing had it
    read_at: float = -math.inf  # last time its attributes were read


class SensorTracker:
    """The gateway's memory and rules; see the module docstring.

    ``cfg`` is a section normalised by :func:`gateways.owfs.config.check_config`.
    ``known`` seeds it with ``((name, entry), value)`` pairs found in the tree below the
    gateway's path, and ``now`` is the start time (seeded values count as read then).
    """

    def __init__(
        self,
        cfg: Mapping[str, Any],
        known: Iterable[tuple[tuple[str, str], Any]] = (),
        now: float = 0.0,
    ) -> None:
        self.interval = float(cfg["interval"])
        self.families: dict[str, tuple[str, ...]] = dict(cfg["attributes"])
        self.per_device: dict[str, Mapping] = dict(cfg.get("devices") or {})
        self.rules = {
            a: Rule(r["deadband"], r["round"], r["min"], r["max"], tuple(r["drop"]))
            for a, r in (cfg.get("rules") or {}).items()
        }
        self.stale_after = float(cfg.get("stale_after", 3.0))
        self.gone_after = float(cfg.get("gone_after", 600.0))
        self.remove_gone = bool(cfg.get("remove_gone", False))
        self.simultaneous = int(cfg.get("simultaneous", 0))
        self.servers = [str(s) for s in cfg.get("servers") or ["owserver"]]
        self.nservers = len(self.servers)
        # (device or alias, attribute) -> the tree entry holding the desired value
        self.output_keys = {(d, a) for d, a, _ in cfg.get("outputs") or ()}
        self.desired: dict[tuple[str, str], Any] = {}  # by (device or alias, attr)
        self.written: dict[tuple[str, str], Any] = {}  # outputs written since last read
        self.tree: dict[tuple[str, str], Any] = {}  # what the tree holds, by name
        self.fresh: dict[tuple[str, str], float] = {}  # last plausible reading, by name
        self.devices: dict[str, _Device] = {}  # by device id
        self.unlisted: dict[str, float] = {}  # names seeded from the tree, not yet listed
        self.failing: dict[str, str] = {}  # device -> error
        self.outage: dict[int, str] = {}  # server -> error
        self.erroring: set[str] = set()  # names with an error-tree record
        self.start = now
        for (name, entry), value in known:
            self.tree[name, entry] = value
            if entry not in (PRESENT, STALE, GONE, DROPPED, MISMATCH):
                self.fresh[name, entry] = now
            self.unlisted[name] = now
        self.erroring = {n for (n, e) in self.tree if e == STALE}

    def present(self) -> int:
        """How many devices are present (listed, the last time their owserver answered)."""
        return sum(1 for d in self.devices.values() if self.tree.get((d.name, PRESENT)) is True)

    # --- what to read

    def wanted(self, device: str, alias: str | None = None) -> tuple[str, ...]:
        """The attributes to read from this device (none: not ours)."""
        for key in (alias, device):
            if key is not None and key in self.per_device:
                attrs = self.per_device[key].get("attributes")
                if attrs is not None:
                    return tuple(attrs)
        attrs = self.families.get(family(device), ())
        outs = tuple(a for (d, a) in self.output_keys if d in (device, alias) and a not in attrs)
        return tuple(attrs) + outs

    def device_interval(self, device: str, alias: str | None = None) -> float:
        for key in (alias, device):
            if key is not None and key in self.per_device:
                iv = self.per_device[key].get("interval")
                if iv is not None:
                    return float(iv)
        return self.interval

    def plan(
        self, listing: Mapping[str, str | None], now: float
    ) -> tuple[dict[str, tuple[str, ...]], bool]:
        """What to read from one owserver's ``listing`` (id -> alias) now: device ->
        attributes, for devices whose own interval is due; and whether to start one
        simultaneous temperature conversion first (then ``temperature`` is read as
        ``latesttemp``)."""
        due: dict[str, tuple[str, ...]] = {}
        for device, alias in listing.items():
            attrs = self.wanted(device, alias)
            if not attrs:
                continue
            d = self.devices.get(device)
            last = d.read_at if d is not None else -math.inf
            # half a base interval of slack: a poll that starts a little early still reads
            if now - last >= self.device_interval(device, alias) - self.interval / 2:
                due[device] = attrs
        temps = sum(1 for a in due.values() if "temperature" in a)
        return due, bool(self.simultaneous) and temps >= self.simultaneous

    # --- outputs

    def want(self, key: str, attribute: str, value: Any) -> Changes:
        """The tree entry for output ``(key, attribute)`` (key: id or alias) now says
        ``value`` (None: deleted, nothing to do). Writes it at once when the device is
        known and the value differs from what was read back."""
        ch = Changes()
        self.desired[key, attribute] = value
        self.written.pop((key, attribute), None)
        for device, d in self.devices.items():
            if key in (device, d.name):
                actual = self.tree.get((d.name, attribute))
                if value is not None and (actual is None or not _agree(value, actual)):
                    ch.outputs.append((device, attribute, _output_text(value)))
                    self.written[key, attribute] = value
        return ch

    # --- one poll

    def lost(self, server: int, error: str) -> bool:
        """Owserver ``server`` could not be reached; True if that is news (log it)."""
        news = server not in self.outage
        self.outage[server] = error
        return news

    def update(
        self,
        now: float,
        listings: Mapping[int, Mapping[str, str | None]],
        readings: Mapping[tuple[str, str], str] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> Changes:
        """Digest one poll at time ``now``: ``listings`` has, for every owserver that
        answered, its devices (id -> alias or None); ``readings`` maps ``(device,
        attribute)`` to raw text; ``errors`` maps devices whose reads failed to the
        error. The returned changes are assumed to be carried out."""
        readings = readings or {}
        errors = errors or {}
        ch = Changes()
        for server in listings:
            if self.outage.pop(server, None) is not None:
                ch.notes.append(f"{self.servers[server]}: reachable again")
        listed: dict[str, tuple[int, str | None]] = {}
        for server, listing in listings.items():
            for device, alias in listing.items():
                if self.wanted(device, alias):
                    listed[device] = (server, alias)
        for device in sorted(listed):
            server, alias = listed[device]
            self._listed(ch, device, server, alias, now)
        by_device: dict[str, list[tuple[str, str]]] = {d: [] for d in errors}
        for (dev, attr), raw in readings.items():
            by_device.setdefault(dev, []).append((attr, raw))
        for device in sorted(by_device.keys() & listed.keys()):
            self._read(ch, device, sorted(by_device[device]), errors.get(device), now)
        self._unlisted(ch, listings, listed, now)
        self._staleness(ch, now)
        return ch

    def check(self, now: float) -> Changes:
        """Time passed without a successful listing (all owservers down): staleness
        and gone-ness still advance."""
        ch = Changes()
        self._unlisted(ch, {}, {}, now)
        self._staleness(ch, now)
        return ch

    # --- the rules

    def _set(self, ch: Changes, name: str, entry: str, value: Any) -> None:
        if (name, entry) not in self.tree or not _same(self.tree[name, entry], value):
            self.tree[name, entry] = value
            ch.writes.append(((name, entry), value))

    def _delete(self, ch: Changes, name: str, entry: str) -> None:
        if self.tree.pop((name, entry), None) is not None:
            ch.deletes.append((name, entry))

    def _listed(self, ch: Changes, device: str, server: int, alias: str | None, now: float):
        name = alias or device
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = _Device(name)
            if name not in self.unlisted:  # new to us and to the tree
                for attr in self.wanted(device, alias):
                    self.fresh.setdefault((name, attr), now)
        elif d.name != name:  # alias added or changed: a new tree name
            ch.notes.append(f"1-wire device {device} is now called {name}")
            d.name = name
            for attr in self.wanted(device, alias):
                self.fresh.setdefault((name, attr), now)
        self.unlisted.pop(name, None)
        d.server, d.seen = server, now
        if self.tree.get((name, PRESENT)) is not True:
            ch.info.append(f"1-wire device {name} present")
        self._set(ch, name, PRESENT, True)
        self._delete(ch, name, GONE)

    def _read(self, ch, device: str, readings, error: str | None, now: float) -> None:
        d = self.devices[device]
        d.read_at = now
        name = d.name
        for attr, raw in readings:
            value = typed_value(raw)
            rule = self.rules.get(attr, Rule())
            if not rule.plausible(value):
                n = self.tree.get((name, DROPPED), 0)
                self._set(ch, name, DROPPED, (n if isinstance(n, int) else 0) + 1)
                ch.notes.append(f"1-wire device {name}: implausible {attr} {raw.strip()!r} dropped")
                ch.refused += 1
                continue
            self.fresh[name, attr] = now
            value = rule.shape(value)
            old = self.tree.get((name, attr), _MISSING)
            if old is _MISSING or rule.moved(old, value):
                self.tree[name, attr] = value
                ch.writes.append(((name, attr), value))
            self._reconcile(ch, device, name, attr, value)
        if error is not None:
            if device not in self.failing:
                ch.notes.append(f"1-wire device {device}: {error} (not repeated until it recovers)")
            self.failing[device] = error
        elif self.failing.pop(device, None) is not None:
            ch.notes.append(f"1-wire device {device}: readable again")

    def _reconcile(self, ch: Changes, device: str, name: str, attr: str, actual: Any) -> None:
        for key in dict.fromkeys((name, device)):
            if (key, attr) not in self.output_keys or (key, attr) not in self.desired:
                continue
            want = self.desired[key, attr]
            mism = set(self.tree.get((name, MISMATCH)) or ())
            if want is None or _agree(want, actual):
                self.written.pop((key, attr), None)
                mism.discard(attr)
            else:
                if (key, attr) in self.written:  # written, and still not what we want
                    mism.add(attr)
                ch.outputs.append((device, attr, _output_text(want)))
                self.written[key, attr] = want
            if mism:
                self._set(ch, name, MISMATCH, sorted(mism))
            else:
                self._delete(ch, name, MISMATCH)

    def _unlisted(self, ch, listings, listed, now: float) -> None:
        everyone = len(listings) >= self.nservers
        for device, d in sorted(self.devices.items()):
            if device in listed:
                continue
            if d.server in listings or everyone:  # its owserver answered without it
                if self.tree.get((d.name, PRESENT)) is True:
                    ch.info.append(f"1-wire device {d.name} gone")
                    self._set(ch, d.name, PRESENT, False)
                    self.failing.pop(device, None)  # a device that comes back: a new start
            self._maybe_gone(ch, d.name, d.seen, now, device)
        for name, since in sorted(self.unlisted.items()):
            if everyone and self.tree.get((name, PRESENT)) is True:
                self._set(ch, name, PRESENT, False)
            self._maybe_gone(ch, name, since, now, None)

    def _maybe_gone(self, ch, name: str, seen: float, now: float, device: str | None) -> None:
        if now - seen < self.gone_after or self.tree.get((name, GONE)) is True:
            return
        if not self.remove_gone:
            self._set(ch, name, GONE, True)
            return
        if not any(n == name for n, _ in self.tree):
            return
        ch.info.append(f"1-wire device {name} gone for {now - seen:.0f} s: removed")
        for n, entry in sorted(self.tree):
            if n == name:
                self._delete(ch, n, entry)
        for key in [k for k in self.fresh if k[0] == name]:
            del self.fresh[key]
        if device is not None:
            del self.devices[device]
        self.unlisted.pop(name, None)
        if name in self.erroring:
            self.erroring.discard(name)
            ch.errors.append((name, None))

    def _staleness(self, ch: Changes, now: float) -> None:
        intervals = {d.name: self.device_interval(dev) for dev, d in self.devices.items()}
        stale: dict[str, list[str]] = {}
        for (name, attr), t in self.fresh.items():
            limit = self.stale_after * intervals.get(name, self.interval)
            if now - t > limit + 1e-9:
                stale.setdefault(name, []).append(attr)
        names = {n for (n, _) in self.fresh} | {n for (n, e) in self.tree if e == STALE}
        for name in sorted(names):
            attrs = sorted(stale.get(name, ()))
            if attrs:
                if self.tree.get((name, STALE)) != attrs:
                    self._set(ch, name, STALE, attrs)
                    ch.errors.append((name, f"no fresh reading of {', '.join(attrs)}"))
                    self.erroring.add(name)
            else:
                self._delete(ch, name, STALE)
                if name in self.erroring:
                    self.erroring.discard(name)
                    ch.errors.append((name, None))


_MISSING = object()


def _agree(want: Any, actual: Any) -> bool:
    """Desired and read-back output values agree (outputs are on/off)."""
    return _truth(want) == _truth(actual)


def _truth(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "0.0", "false", "off", "no")
    return bool(v)


def _output_text(v: Any) -> str:
    return "1" if _truth(v) else "0"
