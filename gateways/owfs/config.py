"""The 1-wire gateway's settings (``gateways.owfs``): schema, defaults, normalisation.

Why a schema: a typo in a sensor setting (``deadbnad``) used to be ignored and a wrong
type became a traceback in the middle of a poll. :func:`check_config` checks the whole
section against :data:`SCHEMA` (distkv.schema) before anything connects and reports
the first problem in one line naming the key; then it normalises what YAML makes
awkward (family codes typed as integers) into the form :class:`~.sensors.SensorTracker`
takes. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from distkv.exceptions import ConfigError, DistKVError
from distkv.schema import (
    Bool,
    Float,
    Int,
    Key,
    ListOf,
    Nullable,
    OpenSection,
    Section,
    Str,
    check,
    defaults,
)
from distkv.util import P

__all__ = ["DEFAULTS", "RESERVED", "SCHEMA", "check_config"]

WHERE = "gateways.owfs"

#: Per-device entries the gateway writes itself; no attribute may be called like them.
RESERVED = ("present", "stale", "gone", "dropped", "mismatch")

_RULE = Section(
    {
        "deadband": Key(Float(min=0), 0.0, "write only when the value moved more than this"),
        "round": Key(Nullable(Int(min=0, max=9)), None, "round to this many decimals"),
        "min": Key(Nullable(Float()), None, "readings below are implausible (dropped)"),
        "max": Key(Nullable(Float()), None, "readings above are implausible (dropped)"),
        "drop": Key(ListOf(Float()), [], "readings that are never real (85.0: power-on)"),
    }
)

_SERVER = Section(
    {
        "host": Key(Str(), "127.0.0.1", "owserver host"),
        "port": Key(Int(min=1, max=65535), 4304, "owserver port"),
    }
)

_DEVICE = Section(
    {
        "attributes": Key(Nullable(ListOf(Str())), None, "attributes to read (default: family's)"),
        "interval": Key(Nullable(Float(min=0.01)), None, "poll interval (default: interval)"),
    }
)

_OUTPUT = Section(
    {
        "device": Key(Str(), None, "device id or alias"),
        "attribute": Key(Str(), None, "output attribute, e.g. PIO.A or PIO.3"),
        "path": Key(Str(), None, "tree entry holding the desired value"),
    }
)

SCHEMA = Section(
    {
        "host": Key(Str(), "127.0.0.1", "owserver host (when servers is empty)"),
        "port": Key(Int(min=1, max=65535), 4304, "owserver port (when servers is empty)"),
        "servers": Key(ListOf(_SERVER), [], "several owservers: [{host, port}, ...]"),
        "path": Key(Str(), "onewire", "tree path the devices go under"),
        "interval": Key(Float(min=0.01), 10.0, "seconds between polls"),
        "attributes": Key(
            OpenSection(ListOf(Str())),
            {"10": ["temperature"], "28": ["temperature"]},
            "family code -> attributes to read",
        ),
        "devices": Key(OpenSection(_DEVICE), {}, "device id or alias -> its own settings"),
        "rules": Key(
            OpenSection(_RULE),
            {"temperature": {"drop": [85.0], "min": -55.0, "max": 125.0}},
            "attribute -> plausibility, deadband, rounding",
        ),
        "stale_after": Key(Float(min=1), 3.0, "a reading older than this many intervals is stale"),
        "gone_after": Key(Float(min=0), 600.0, "seconds unlisted before a device is gone"),
        "remove_gone": Key(Bool(), False, "delete a gone device's entries"),
        "simultaneous": Key(
            Int(min=0), 2, "this many temperature sensors on one owserver: convert at once (0: never)"
        ),
        "conversion": Key(Float(min=0), 0.8, "seconds a simultaneous conversion takes"),
        "outputs": Key(ListOf(_OUTPUT), [], "output attributes that follow a tree entry"),
    }
)

DEFAULTS: dict[str, Any] = defaults(SCHEMA)

_FAMILY = re.compile(r"[0-9A-Fa-f]{2}")


def _family(fam: Any) -> str:
    # YAML reads an unquoted 28: as the integer 28 (and 05 as 5): take the digits typed
    if isinstance(fam, int) and not isinstance(fam, bool) and 0 <= fam < 100:
        return f"{fam:02d}"
    if isinstance(fam, str) and _FAMILY.fullmatch(fam):
        return fam.upper()
    raise ConfigError(f"{WHERE}.attributes: {fam!r} is not a family code (like 28)")


def _attr(name: Any, where: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name.startswith("/")
        or ".." in name.split("/")
        or name in RESERVED
    ):
        raise ConfigError(f"{where}: bad attribute {name!r}")
    return name


def _normalise_attributes(attrs: Mapping) -> dict[str, tuple[str, ...]]:
    families: dict[str, tuple[str, ...]] = {}
    for fam, names in attrs.items():
        key = _family(fam)
        families[key] = tuple(_attr(n, f"{WHERE}.attributes.{key}") for n in names or ())
    return families


def check_config(cfg: Mapping) -> dict:
    """The section, checked against :data:`SCHEMA` and normalised; ConfigError (one
    line, naming the key) if unusable.

    Before the schema check, ``attributes`` values that are a single string or null
    are taken as a one-item or empty list (the forms the gateway always accepted).
    Afterwards: ``path`` is a Path, family codes are upper-case two-digit strings,
    ``servers`` is a non-empty list of ``(host, port)``, ``devices`` and ``rules`` are
    plain dicts with every key filled in from their defaults.
    """
    out = dict(cfg)
    attrs = out.get("attributes")
    if isinstance(attrs, Mapping):
        out["attributes"] = {
            k: ([] if v is None else [v] if isinstance(v, str) else v) for k, v in attrs.items()
        }
    check(SCHEMA, out, WHERE + ".")
    if not out["host"]:
        raise ConfigError(f"{WHERE}.host must be a host name")
    if not math.isfinite(out["interval"]):
        raise ConfigError(f"{WHERE}.interval must be a finite number of seconds")
    try:
        out["path"] = P(out["path"])
    except (DistKVError, TypeError, ValueError) as exc:
        raise ConfigError(f"{WHERE}.path: {exc}") from None
    out["attributes"] = _normalise_attributes(out["attributes"])
    servers = [(s.get("host", "127.0.0.1"), s.get("port", 4304)) for s in out["servers"]]
    out["servers"] = servers or [(out["host"], out["port"])]
    devices = {}
    for name, dev in out["devices"].items():
        d = {"attributes": None, "interval": None, **dev}
        if d["attributes"] is not None:
            d["attributes"] = tuple(_attr(a, f"{WHERE}.devices.{name}") for a in d["attributes"])
        devices[str(name)] = d
    out["devices"] = devices
    rules = {}
    for attr, rule in out["rules"].items():
        r = {"deadband": 0.0, "round": None, "min": None, "max": None, "drop": [], **rule}
        if r["min"] is not None and r["max"] is not None and r["min"] > r["max"]:
            raise ConfigError(f"{WHERE}.rules.{attr}: min is above max")
        rules[str(attr)] = r
    out["rules"] = rules
    outputs = []
    for i, o in enumerate(out["outputs"]):
        for k in ("device", "attribute", "path"):
            if not o.get(k):
                raise ConfigError(f"{WHERE}.outputs.{i}.{k} is missing")
        try:
            path = P(o["path"])
        except (DistKVError, TypeError, ValueError) as exc:
            raise ConfigError(f"{WHERE}.outputs.{i}.path: {exc}") from None
        outputs.append((o["device"], _attr(o["attribute"], f"{WHERE}.outputs.{i}"), path))
    out["outputs"] = outputs
    return out
