"""Read the plain YAML most configuration files are, without importing PyYAML.

Why: importing ``yaml`` compiles a dozen regular expressions (one over most of Unicode)
and costs about as much as the rest of a one-shot ``distkv client data x set`` command's
own work; shell scripts and Node-RED ``exec`` nodes pay that once per value. Most
configuration files are a few nested ``key: value`` lines (and lists of scalars, ``- a``),
so those are read here.

The rule: :func:`parse` returns exactly what ``yaml.safe_load`` would return, or None
when the text is anything it does not fully understand (lists, flow style, anchors,
tags, lists of anything but scalars, multi-line or escaped strings, YAML 1.1's ``yes``/``on``, non-ASCII, tabs,
duplicate keys, ...); the caller then uses PyYAML. A property test holds it to that.
Pure: no I/O.
"""

from __future__ import annotations

import re

__all__ = ["UNKNOWN", "parse", "scalar"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# a plain scalar that YAML resolves to a string: starts with a letter, '_' or '/', and
# holds no indicator that could mean something else (': ', ' #', ',', '[', '{', ...)
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@%+=-]*(?:[: ][A-Za-z0-9_./@%+=-]+)*")
_INT = re.compile(r"0|-?[1-9][0-9]*")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")  # an IPv4 address: a string in YAML
# words YAML 1.1 (PyYAML) reads as booleans or null in some spelling
_SPECIAL = {"yes", "no", "on", "off", "true", "false", "null", "y", "n"}
_CONST = {"true": True, "false": False, "null": None, "~": None}


class _Unknown(Exception):
    """Something this reader does not handle: let PyYAML read the text."""


def parse(text: str) -> dict | None:
    """The mapping ``yaml.safe_load(text)`` would give, or None (use PyYAML)."""
    if not text.isascii() or "\t" in text or "\r" in text:
        return None
    try:
        return _parse(text.split("\n"))
    except _Unknown:
        return None


UNKNOWN = object()  # what scalar() returns for text it leaves to PyYAML


def scalar(text: str):
    """The value ``yaml.safe_load(text)`` gives for one plain or quoted scalar (a
    ``-C key=value`` override), or :data:`UNKNOWN` (use PyYAML)."""
    if not text.isascii() or not text.isprintable() or text != text.strip(" "):
        return UNKNOWN
    if text == "":
        return UNKNOWN
    try:
        value = _value(text)
    except _Unknown:
        return UNKNOWN
    return UNKNOWN if value is _OPEN else value


def _parse(lines: list[str]) -> dict:
    root: dict = {}
    stack: list[tuple[int, dict]] = [(0, root)]
    pending: tuple[dict, str] | None = None  # "key:" with nothing after it yet
    seq: tuple[list, int] | None = None  # the block list being read, and its indent
    for line in lines:
        if not line.isprintable():
            raise _Unknown
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        if body[0] == "-":  # an item of a block list of scalars ("- a")
            if body[:2] != "- ":
                raise _Unknown
            if pending is not None and indent >= stack[-1][0]:
                parent, key = pending
                pending = None
                seq = ([], indent)
                parent[key] = seq[0]
            elif seq is None or indent != seq[1]:
                raise _Unknown
            item = _value(body[2:].strip(" "))
            if item is _OPEN:
                raise _Unknown  # a nested list or mapping, or "-" alone
            seq[0].append(item)
            continue
        seq = None
        if pending is not None:
            parent, key = pending
            pending = None
            if indent > stack[-1][0]:
                child: dict = {}
                parent[key] = child
                stack.append((indent, child))
            else:
                parent[key] = None
        while indent < stack[-1][0]:
            stack.pop()
        if indent != stack[-1][0]:
            raise _Unknown
        target = stack[-1][1]
        key, sep, rest = body.partition(":")
        if not sep or not _KEY.fullmatch(key) or key.lower() in _SPECIAL or key in target:
            raise _Unknown
        if rest and rest[0] != " ":
            raise _Unknown  # "key:value" is a plain scalar, not a mapping entry
        value = _value(rest.strip(" "))
        if value is _OPEN:
            target[key] = None
            pending = (target, key)
        else:
            target[key] = value
    return root


_OPEN = object()  # "key:" (a nested mapping follows, or null)


def _value(text: str):
    if not text or text.startswith("#"):
        return _OPEN
    q = text[0]
    if q in "\"'":
        end = text.find(q, 1)
        if end < 0:
            raise _Unknown
        inner, after = text[1:end], text[end + 1 :]
        if (q == '"' and "\\" in inner) or (after and not after.lstrip(" ").startswith("#")):
            raise _Unknown  # escapes, '' inside single quotes, text after the quote
        if after and not after.startswith(" "):
            raise _Unknown
        return inner
    cut = text.find(" #")
    if cut >= 0:
        text = text[:cut].rstrip(" ")
    if text in _CONST:
        return _CONST[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _DOTTED.fullmatch(text):
        return text
    if _PLAIN.fullmatch(text) and text.lower() not in _SPECIAL:
        return text
    raise _Unknown
