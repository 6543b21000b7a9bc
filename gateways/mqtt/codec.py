"""Payload codecs: MQTT bytes <-> typed tree values (pure).

Declared per entity in the gateway's configuration (``codec: onoff``), applied by the
gateway itself, so values in the tree are typed (bool, int, float, JSON) whatever the
network's auth setting is (the server's per-user codecs only run with auth on).

``decode`` raises :class:`CodecError` for a payload it cannot take: the gateway logs it
and writes nothing (a device saying ``"warm"`` must not become a temperature).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CODECS", "Codec", "CodecError", "get_codec"]


class CodecError(ValueError):
    """A payload or value the codec cannot convert."""


_TRUE = ("on", "true", "1", "yes", "online")
_FALSE = ("off", "false", "0", "no", "offline")


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CodecError(f"not UTF-8: {payload[:20]!r}") from None


def _to_bool(value: Any) -> bool:
    """A value -> bool, for JSON fields (zigbee2mqtt ``"state": "ON"``) and payloads."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, bytes):
        value = _text(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise CodecError(f"{value!r} is not on/off")


def _to_float(value: Any) -> float:
    if isinstance(value, bytes):
        value = _text(value)
    if isinstance(value, bool):
        raise CodecError(f"{value!r} is not a number")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise CodecError(f"{value!r} is not a number") from None
    if not math.isfinite(f):
        raise CodecError(f"{value!r} is not a finite number")
    return f


def _to_int(value: Any) -> int:
    f = _to_float(value)
    if f != int(f):
        raise CodecError(f"{value!r} is not an integer")
    return int(f)


def _to_str(value: Any) -> str:
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return json.loads(value)
        except ValueError:
            raise CodecError(f"not JSON: {value[:40]!r}") from None
    return value


def _onoff_out(on: str, off: str) -> Callable[[Any], str]:
    def enc(value: Any) -> str:
        return on if _to_bool(value) else off

    return enc


@dataclass(frozen=True)
class Codec:
    """``decode``: payload bytes or a JSON field's value -> tree value.
    ``encode``: tree value -> what to send (a str, or a JSON value when it goes into a
    JSON command's field). ``kind``: bool/number/text/json, for Home Assistant."""

    name: str
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any]
    kind: str

    def to_payload(self, value: Any) -> bytes:
        """A tree value as a whole MQTT payload."""
        out = self.encode(value)
        if isinstance(out, str):
            return out.encode("utf-8")
        return json.dumps(out).encode("utf-8")


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("onoff", _to_bool, _onoff_out("ON", "OFF"), "bool"),  # Tasmota, zigbee2mqtt
        Codec("onoff_lower", _to_bool, _onoff_out("on", "off"), "bool"),  # Shelly gen1
        Codec("bool", _to_bool, _onoff_out("true", "false"), "bool"),
        Codec("float", _to_float, lambda v: _to_float(v), "number"),
        Codec("int", _to_int, lambda v: _to_int(v), "number"),
        Codec("str", _to_str, _to_str, "text"),
        Codec("json", _from_json, lambda v: v, "json"),
    )
}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r} (known: {', '.join(CODECS)})") from None
