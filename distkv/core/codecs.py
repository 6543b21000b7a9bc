"""Codecs: per-user translation of values on the way in and out (pure).

Some clients want boring single values: an MQTT gateway sends and expects strings
(``"ON"``, ``"12.5"``), while the tree should hold typed values (``True``, ``12.5``). A
codec translates; a *converter* (a named list of path patterns, each bound to a codec)
says where; a user's ``aux: {codec: NAME}`` says for whom. Tree layout::

    .distkv codec float str           {"encode": "return str(value)",
                                       "decode": "return float(value)",
                                       "in": [["12.5", 12.5]], "out": [[13.25, "13.25"]]}
    .distkv conv floatval monitor # value   {"codec": ["float", "str"]}

``decode`` runs on what such a user writes (before type checks), ``encode`` on what the
user reads (get, get_tree, watch). Examples are mandatory and checked when the codec is
stored: ``in`` pairs are (what the client sends, what gets stored), ``out`` pairs are
(what is stored, what the client gets). They need not be symmetric: a bool codec may
accept many true-ish strings and always answer ``"ON"``.

A user whose converter or codec is missing or broken fails closed for the matching
paths: writes are refused, reads carry the error (see the server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import ClientError, ScriptError, ValueTypeError
from .path import Path
from .pattern import PatternMap, check_pattern
from .script import DEFAULT_BUDGET, compile_script, def_name, describe_error, examples, run_script
from .script import fmt_name as _fmt
from .types import NotGiven

logger = logging.getLogger(__name__)

__all__ = ["CODEC_ROOT", "CONV_ROOT", "Codec", "CodecRegistry", "codec_name"]

CODEC_ROOT = (None, "codec")
CONV_ROOT = (None, "conv")


def codec_name(name: Any) -> tuple:
    """A codec name (``"a.b"``, a tuple or a list) as a tuple of strings."""
    return def_name(name, "codec")


def _pairs(value: Mapping, key: str, what: str) -> list[tuple[Any, Any]]:
    out = []
    for item in examples(value, key, what):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ClientError(f"{what}: {key!r} examples are [source, result] pairs")
        out.append((item[0], item[1]))
    return out


class Codec:
    """One codec as stored, compiled."""

    __slots__ = ("name", "encode_fn", "decode_fn", "inputs", "outputs", "budget")

    def __init__(self, name: tuple, value: Any, budget: float = DEFAULT_BUDGET):
        self.budget = budget
        what = f"codec {_fmt(name)}"
        if not isinstance(value, Mapping):
            raise ClientError(f"{what}: the definition must be a mapping")
        self.name = name
        self.encode_fn: Callable = compile_script(value.get("encode"), f"{what} encode")
        self.decode_fn: Callable = compile_script(value.get("decode"), f"{what} decode")
        self.inputs = _pairs(value, "in", what)
        self.outputs = _pairs(value, "out", what)

    def encode(self, value: Any) -> Any:
        return run_script(self.encode_fn, value, self.budget)

    def decode(self, value: Any) -> Any:
        return run_script(self.decode_fn, value, self.budget)

    def verify(self) -> None:
        """Run the examples; ScriptError naming the first that does not hold."""
        what = f"codec {_fmt(self.name)}"
        if not self.inputs or not self.outputs:
            raise ScriptError(
                f"{what} needs examples both ways (-i SOURCE RESULT, -o SOURCE RESULT)"
            )
        for direction, fn, pairs in (
            ("decode", self.decode_fn, self.inputs),
            ("encode", self.encode_fn, self.outputs),
        ):
            for src, want in pairs:
                try:
                    got = run_script(fn, src, self.budget)
                except Exception as exc:  # noqa: BLE001 - stored code may raise anything
                    raise ScriptError(
                        f"{what}: {direction} of {src!r} fails: {describe_error(exc)}"
                    ) from None
                if got != want or type(got) is not type(want):
                    raise ScriptError(
                        f"{what}: {direction} of {src!r} gives {got!r}, the example says {want!r}"
                    )


class Converter:
    """What one user's converter does to values at given paths."""

    __slots__ = ("registry", "name")

    def __init__(self, registry: CodecRegistry, name: str):
        self.registry = registry
        self.name = name

    def _codec(self, path: tuple) -> Codec | None:
        conv = self.registry.convs.get(self.name)
        if conv is None:
            raise ValueTypeError(f"converter {self.name!r} (the user's codec) does not exist")
        hit = conv.lookup(path)
        if hit is None:
            return None
        pattern, cname = hit
        codec = self.registry.codecs.get(cname) if cname is not None else None
        if codec is None:
            why = self.registry.broken.get(cname, "it is not defined") if cname else "unreadable"
            raise ValueTypeError(
                f"{Path(*path)}: the codec bound to {Path(*pattern)} is unusable: {why}"
            )
        return codec

    def _apply(self, path: tuple, value: Any, decode: bool) -> Any:
        codec = self._codec(path)
        if codec is None:
            return value
        try:
            return codec.decode(value) if decode else codec.encode(value)
        except Exception as exc:  # noqa: BLE001 - stored code may raise anything
            raise ValueTypeError(
                f"{Path(*path)}: codec {_fmt(codec.name)} cannot "
                f"{'decode' if decode else 'encode'} {value!r}: {describe_error(exc)}"
            ) from None

    def decode(self, path: tuple, value: Any) -> Any:
        """What a value written by this user is stored as (ValueTypeError if it can't)."""
        return self._apply(path, value, True)

    def encode(self, path: tuple, value: Any) -> Any:
        """What this user reads for a stored value (ValueTypeError if it can't)."""
        return self._apply(path, value, False)


class CodecRegistry:
    """The codecs and converters of one node, kept current by :meth:`apply`."""

    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self.budget = budget  # seconds per call of a codec (server.limits.script_ms)
        self.codecs: dict[tuple, Codec] = {}
        self.broken: dict[tuple, str] = {}
        self.convs: dict[str, PatternMap] = {}

    def converter(self, name: Any) -> Converter | None:
        """The converter a user's ``aux.codec`` names (None: no translation)."""
        if name is None:
            return None
        return Converter(self, str(name))

    def apply(self, path: tuple, value: Any) -> bool:
        """Take note of a changed system entry; bad data is logged, never raised."""
        if len(path) < 3 or path[0] is not None:
            return False
        if path[1] == "codec":
            name = tuple(path[2:])
            self.codecs.pop(name, None)
            self.broken.pop(name, None)
            if value is not NotGiven:
                try:
                    self.codecs[name] = Codec(name, value, self.budget)
                except ClientError as exc:
                    self.broken[name] = str(exc)
                    logger.error("stored codec %s is unusable: %s", _fmt(name), exc)
            return True
        if path[1] == "conv":
            conv, pattern = path[2], tuple(path[3:])
            if not isinstance(conv, str):
                return False
            pm = self.convs.get(conv)
            if pm is None:
                if value is NotGiven:
                    return True
                pm = self.convs[conv] = PatternMap()
            pm.bind(
                pattern, value, lambda v: codec_name(v.get("codec")), f"stored converter {conv}"
            )
            if not pm:
                del self.convs[conv]  # an empty converter would pass every path through
            return True
        return False

    def validate(self, path: tuple, value: Any) -> None:
        """Refuse a write of a codec or converter entry that would not work."""
        if len(path) < 2 or path[0] is not None or value is NotGiven:
            return
        if path[1] == "codec":
            name = codec_name(tuple(path[2:]))
            Codec(name, value, self.budget).verify()
        elif path[1] == "conv":
            if len(path) < 4 or not isinstance(path[2], str):
                raise ClientError("a converter entry is .distkv conv NAME PATTERN...")
            check_pattern(path[3:])
            if not isinstance(value, Mapping) or "codec" not in value:
                raise ClientError('a converter entry is a mapping {"codec": NAME}')
            name = codec_name(value["codec"])
            if name not in self.codecs:
                raise ClientError(f"codec {_fmt(name)} does not exist")
