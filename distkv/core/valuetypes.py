"""Types: stored checks that values written to matching paths must pass (pure).

Tree layout (all in the system tree, replicated like any data)::

    .distkv type int            {"code": "...", "good": [0, -2], "bad": [1.2, "x"]}
    .distkv type int percent    a subtype: its values must also be valid ints
    .distkv match stats # quota {"type": ["int", "percent"]}

A type's code is the body of a function of ``value`` (see :mod:`.script`); it rejects a
value by raising (or by returning ``False``). A type must come with good and bad
examples, and a subtype's examples must all pass its supertypes: so a definition that
does not do what its author meant is refused when it is stored, not when data arrives.

A write to a path is checked against the most specific ``match`` pattern covering it
(see :mod:`.pattern`), running the type's checks from the root type down. A match
whose type (or a supertype) is missing or does not compile fails closed: writes there
are refused with a message saying so, until the type is fixed. Existing values are not
re-checked when types change (as the tutorial says).
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

__all__ = ["MATCH_ROOT", "TYPE_ROOT", "TypeDef", "TypeRegistry", "type_name"]

TYPE_ROOT = (None, "type")
MATCH_ROOT = (None, "match")


def type_name(name: Any) -> tuple:
    """A type name (``"a.b"``, a tuple or a list) as a tuple of strings."""
    return def_name(name, "type")


class TypeDef:
    """One type as stored: its code (compiled) and examples."""

    __slots__ = ("name", "code", "good", "bad", "check", "budget")

    def __init__(self, name: tuple, value: Any, budget: float = DEFAULT_BUDGET):
        self.name = name
        self.budget = budget
        if not isinstance(value, Mapping):
            raise ClientError(f"type {_fmt(name)}: the definition must be a mapping")
        self.code = value.get("code")
        self.good = examples(value, "good", f"type {_fmt(name)}")
        self.bad = examples(value, "bad", f"type {_fmt(name)}")
        self.check: Callable = compile_script(self.code, f"type {_fmt(name)}")

    def passes(self, value: Any) -> str | None:
        """None if ``value`` passes this type's own check, else why not."""
        try:
            if run_script(self.check, value, self.budget) is False:
                return "the check returned False"
        except Exception as exc:  # noqa: BLE001 - stored code may raise anything
            return describe_error(exc)
        return None


class TypeRegistry:
    """The types and matches of one node, kept current by :meth:`apply`."""

    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self.budget = budget  # seconds per call of a check (server.limits.script_ms)
        self.types: dict[tuple, TypeDef] = {}
        self.broken: dict[tuple, str] = {}  # stored types that do not compile here
        self.matches = PatternMap()

    # --- following the tree

    def apply(self, path: tuple, value: Any) -> bool:
        """Take note of a changed system entry; bad data is logged, never raised."""
        if len(path) < 3 or path[0] is not None:
            return False
        kind = path[1]
        if kind == "type":
            name = tuple(path[2:])
            self.types.pop(name, None)
            self.broken.pop(name, None)
            if value is not NotGiven:
                try:
                    self.types[name] = TypeDef(name, value, self.budget)
                except ClientError as exc:
                    self.broken[name] = str(exc)
                    logger.error("stored type %s is unusable: %s", _fmt(name), exc)
            return True
        if kind == "match":
            self.matches.bind(
                tuple(path[2:]), value, lambda v: type_name(v.get("type")), "stored type match"
            )
            return True
        return False

    # --- checking writes

    def _chain(self, name: tuple) -> list[TypeDef]:
        """The type and its supertypes, root first; ValueTypeError if one is unusable."""
        out = []
        for i in range(1, len(name) + 1):
            t = self.types.get(name[:i])
            if t is None:
                why = self.broken.get(name[:i], "it is not defined")
                raise ValueTypeError(f"type {_fmt(name[:i])} is unusable: {why}")
            out.append(t)
        return out

    def check(self, path: tuple, value: Any) -> None:
        """Raise ValueTypeError unless ``value`` may be stored at ``path``."""
        if not self.matches:
            return
        hit = self.matches.lookup(path)
        if hit is None:
            return
        pattern, name = hit
        if name is None:
            raise ValueTypeError(f"{Path(*path)}: the type bound to {Path(*pattern)} is unreadable")
        for t in self._chain(name):
            why = t.passes(value)
            if why is not None:
                raise ValueTypeError(
                    f"{Path(*path)}: {value!r} is not a valid {_fmt(t.name)}: {why}"
                )

    # --- checking definitions (local writes to the system tree)

    def validate(self, path: tuple, value: Any) -> None:
        """Refuse a write of a type or match definition that would not work."""
        if len(path) < 2 or path[0] is not None or value is NotGiven:
            return
        if path[1] == "type":
            self._validate_type(tuple(path[2:]), value)
        elif path[1] == "match":
            self._validate_match(tuple(path[2:]), value)

    def _validate_type(self, name: tuple, value: Any) -> None:
        name = type_name(name)
        t = TypeDef(name, value, self.budget)
        supers = self._chain(name[:-1]) if len(name) > 1 else []
        if not t.good or not t.bad:
            raise ScriptError(f"type {_fmt(name)} needs good and bad examples (-g / -b)")
        for ex in t.good + t.bad:
            for s in supers:
                why = s.passes(ex)
                if why is not None:
                    raise ScriptError(
                        f"type {_fmt(name)}: example {ex!r} fails the supertype "
                        f"{_fmt(s.name)}: {why}"
                    )
        for ex in t.good:
            why = t.passes(ex)
            if why is not None:
                raise ScriptError(f"type {_fmt(name)}: good example {ex!r} fails: {why}")
        for ex in t.bad:
            if t.passes(ex) is None:
                raise ScriptError(f"type {_fmt(name)}: bad example {ex!r} passes the check")

    def _validate_match(self, pattern: tuple, value: Any) -> None:
        check_pattern(pattern)
        if not pattern:
            raise ClientError("a type match needs a path pattern")
        if not isinstance(value, Mapping) or "type" not in value:
            raise ClientError('a type match is a mapping {"type": NAME}')
        self._chain(type_name(value["type"]))
