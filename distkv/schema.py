"""Typed configuration: every key's type, default and meaning in one place.

Why: a typo (``server.bind_defualt.port``) used to be ignored silently, a wrong type
(``port: notaport``) became a traceback deep inside the server, and a replication knob
could replace a method. Now :func:`check` walks a configuration against a schema and
reports the first problem in one line that names the key, with a "did you mean" for
unknown keys; :func:`defaults` builds the default configuration from the same schema.

Pure: no I/O. A schema is nested :class:`Section` objects whose fields are :class:`Key`
(a type, a default, a line of help). Types are small checker objects (:class:`Int`,
:class:`Str`, :class:`OneOf`, :class:`Nullable`, ...) so that a key's rule is data
that ``distkv dump cfg --schema`` can print, not code scattered over the modules that
read it. They are plain classes, not dataclasses: every command loads this module,
and importing dataclasses (with inspect, ast, dis, tokenize) was a tenth of a one-shot
CLI command's own start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import ConfigError

__all__ = [
    "AnyOf",
    "AnyValue",
    "Bool",
    "Float",
    "Int",
    "Key",
    "ListOf",
    "Nullable",
    "OneOf",
    "OpenSection",
    "Section",
    "Str",
    "check",
    "copy_tree",
    "defaults",
    "describe",
]


class Type:
    """A value checker: :meth:`problem` returns None if ``value`` fits, else why not."""

    name = "value"

    def problem(self, value: Any) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError


class AnyValue(Type):
    name = "any value"

    def problem(self, value: Any) -> str | None:
        return None


class Int(Type):
    __slots__ = ("min", "max")

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min = min
        self.max = max

    @property
    def name(self) -> str:
        return "an integer" + _range(self.min, self.max)

    def problem(self, value: Any) -> str | None:
        if type(value) is not int:
            return f"{value!r} is not {self.name}"
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return f"{value} is not {self.name}"
        return None


class Float(Type):
    """A number (an integer is fine too)."""

    __slots__ = ("min", "max")

    def __init__(self, min: float | None = None, max: float | None = None):
        self.min = min
        self.max = max

    @property
    def name(self) -> str:
        return "a number" + _range(self.min, self.max)

    def problem(self, value: Any) -> str | None:
        if type(value) not in (int, float) or value != value:  # NaN
            return f"{value!r} is not {self.name}"
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            return f"{value} is not {self.name}"
        return None


class Str(Type):
    name = "a string"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) else f"{value!r} is not a string"


class Bool(Type):
    name = "true or false"

    def problem(self, value: Any) -> str | None:
        return None if type(value) is bool else f"{value!r} is not true or false"


class OneOf(Type):
    def __init__(self, *choices: Any):
        self.choices = choices

    @property
    def name(self) -> str:
        return "one of " + ", ".join(map(repr, self.choices))

    def problem(self, value: Any) -> str | None:
        for c in self.choices:
            if value == c and type(value) is type(c):
                return None
        return f"{value!r} is not {self.name}"


class ListOf(Type):
    def __init__(self, item: Type):
        self.item = item

    @property
    def name(self) -> str:
        return f"a list of {_plural(self.item.name)}"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list | tuple):
            return f"{value!r} is not {self.name}"
        for i, v in enumerate(value):
            p = self.item.problem(v)
            if p is not None:
                return f"item {i}: {p}"
        return None


class Nullable(Type):
    def __init__(self, inner: Type):
        self.inner = inner

    @property
    def name(self) -> str:
        return f"{self.inner.name} or null"

    def problem(self, value: Any) -> str | None:
        return None if value is None else self.inner.problem(value)


class AnyOf(Type):
    def __init__(self, *options: Type):
        self.options = options

    @property
    def name(self) -> str:
        return " or ".join(o.name for o in self.options)

    def problem(self, value: Any) -> str | None:
        problems = [o.problem(value) for o in self.options]
        if any(p is None for p in problems):
            return None
        # a mapping that nearly fits a section: say what is wrong inside it
        if isinstance(value, Mapping):
            for o in self.options:
                if isinstance(o, Section):
                    return problems[self.options.index(o)]
        return f"{value!r} is not {self.name}"


class Key:
    """One setting: its type, its default and a line of help."""

    __slots__ = ("type", "default", "help")

    def __init__(self, type: Type, default: Any = None, help: str = ""):
        self.type = type
        self.default = default
        self.help = help


class Section(Type):
    """A mapping with known keys (each a :class:`Key` or a nested section)."""

    name = "a mapping"

    def __init__(self, fields: dict[str, Key | Section] | None = None, help: str = ""):
        self.fields = {} if fields is None else fields
        self.help = help

    def problem(self, value: Any) -> str | None:
        try:
            _check(self, value, "")
        except ConfigError as exc:
            return str(exc)
        return None


class OpenSection(Type):
    """A mapping whose keys are names the user chooses (``gateways.NAME``); every value
    is checked against ``value``."""

    name = "a mapping"

    def __init__(self, value: Type | None = None, help: str = ""):
        self.value = AnyValue() if value is None else value
        self.help = help

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f"{value!r} is not a mapping"
        for k, v in value.items():
            p = self.value.problem(v)
            if p is not None:
                return f"{k}: {p}"
        return None


def _range(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _plural(name: str) -> str:
    for art in ("an ", "a "):
        if name.startswith(art):
            return name[len(art) :] + "s"
    return name


def copy_tree(value: Any) -> Any:
    """A deep copy of configuration data (mappings, lists, scalars): ``copy.deepcopy``
    without importing copy and weakref in every command."""
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    if isinstance(value, tuple):
        return tuple(copy_tree(v) for v in value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    import copy

    return copy.deepcopy(value)


def defaults(section: Section) -> dict:
    """The default configuration a schema describes."""
    out: dict[str, Any] = {}
    for k, f in section.fields.items():
        out[k] = defaults(f) if isinstance(f, Section) else copy_tree(f.default)
    return out


def check(section: Section, cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first unknown key or wrongly typed value,
    naming its dotted key (``server.bind_default.port: 'x' is not an integer ...``)."""
    _check(section, cfg, prefix)


def _check(section: Section, cfg: Any, prefix: str) -> None:
    where = prefix.rstrip(".") or "the configuration"
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: {cfg!r} is not a mapping")
    for k, v in cfg.items():
        f = section.fields.get(k) if isinstance(k, str) else None
        if f is None:
            import difflib  # here: only a wrong key pays for it

            hint = difflib.get_close_matches(str(k), list(section.fields), n=1, cutoff=0.6)
            known = f"did you mean {prefix}{hint[0]}?" if hint else (
                "known: " + ", ".join(section.fields) if section.fields else "it takes none"
            )  # fmt: skip
            raise ConfigError(f"unknown setting {prefix}{k} ({known})")
        if isinstance(f, Section):
            _check(f, v, f"{prefix}{k}.")
            continue
        p = f.type.problem(v)
        if p is not None:
            raise ConfigError(f"{prefix}{k}: {p}")


def describe(section: Section, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, help)`` for every key, for documentation."""
    out = []
    for k, f in section.fields.items():
        if isinstance(f, Section):
            out.extend(describe(f, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", f.type.name, f.default, f.help))
    return out
