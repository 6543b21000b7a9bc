"""Paths: the keys of the DistKV tree.

A :class:`Path` is an immutable tuple of elements. Elements are ``str``, ``int``,
``bool``, ``float``, ``bytes``, tuples of these (nested, and inside tuples ``None`` is a
fine value too), and ``None`` -- but ``None`` only as the *first* element, where it
names the system tree. Only these exact types are accepted (no subclasses such as
``IntEnum``), because a path must survive the string form and the wire unchanged,
type included.

Paths have a compact string form (shared with ``moat.util.Path``, whose output this
mirrors). Elements are separated by ``.``; the colon is the escape character.

Inside a string element::

    :.   a literal dot
    ::   a literal colon
    :_   a space (a literal space is accepted as well; ``_`` itself is not special)

Starting a new element::

    :t   True            :x1F   hex integer (31)        :vabc  bytes, literally (b"abc")
    :f   False           :b101  binary integer (5)      :y00ff bytes, hex (b"\\x00\\xff")
    :n   None (first!)   :sAA== bytes, base64 (compat)
    :e   ""              :123, :-4, :1:.5, :(1,'a'), :'x'  any Python *literal*
                         (``ast.literal_eval``, never ``eval``; ``:i...`` forces this)

A lone ``:`` is the empty path.

Delimiting rules (as in the original):

* An unescaped ``.`` always ends the current element. Dots *inside* an expression
  must therefore be escaped too: the float 2.5 is ``:2:.5``, the tuple (1, 2.5) is
  ``:(1,2:.5)``. Commas, parentheses and quotes are not special.
* A colon that starts a new element also ends the previous one: ``a:5`` is
  ``('a', 5)`` and ``:t:f`` is ``(True, False)``. The canonical form never writes a dot
  before such a colon; ``a.:5`` is accepted as an alias of ``a:5`` on input.
* A string element after a non-string one needs the dot: ``:5.a``, ``:t.a``.

Errors (all :class:`~distkv.exceptions.PathError`): the empty string (write ``:``), a
leading ``.``, a trailing ``.``, an empty element ``a..b`` (write ``a:e.b`` for an empty
string), a dangling ``:`` at the end, a string glued to a finished element (``:t_``, ``:t:.x``),
``None`` anywhere but first, a malformed ``:x``/``:b``/``:y``/``:s`` payload, and any
``:expr`` that is not a literal of an allowed type (``:tx``, ``:print(1)``,
``:i__import__('os')``, ``:[1]``). Note that ``:__import__('os')`` is merely the string
``" _import__('os')"``, because ``:_`` is the space escape.
"""

from __future__ import annotations

import binascii
import math
import re
from base64 import b64decode
from collections.abc import Iterable
from typing import Any, SupportsIndex, overload

from ..exceptions import PathError

__all__ = ["P", "Path", "sort_key"]

_SCALARS = frozenset({str, int, bool, float, bytes})

# Tokens: runs of ordinary characters, or one of the three special characters.
_TOKEN = re.compile(r"[^:._]+|[:._]")
_HEX_INT = re.compile(r"-?[0-9A-Fa-f]+")
_BIN_INT = re.compile(r"-?[01]+")
_HEX_BYTES = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _bad_type(x: Any, where: str) -> PathError:
    return PathError(
        f"{where}: a path element cannot be of type {type(x).__name__} ({x!r}); "
        "use str, int, bool, float, bytes, or a tuple of these"
    )


#: How deep tuples may nest inside one path element. Deeper ones are refused: every
#: consumer of paths (str(), hashing, msgpack, the log) recurses on them, and a path
#: nested ~1,000 deep would end the process with a RecursionError.
MAX_NESTING = 16


def _check_value(x: Any, where: str, depth: int = 1) -> None:
    """Check a value nested inside a tuple element (here ``None`` is allowed)."""
    t = type(x)
    if t in _SCALARS:
        if t is float and x != x:
            raise PathError(f"{where}: NaN cannot be a path element (it is not equal to itself)")
        return
    if x is None:
        return
    if t is tuple:
        if depth > MAX_NESTING:
            raise PathError(f"{where}: tuples nest more than {MAX_NESTING} deep")
        for y in x:
            _check_value(y, where, depth + 1)
        return
    raise _bad_type(x, where)


def _check_elements(elements: tuple, start: int = 0) -> None:
    """Validate path elements; ``start`` is the position of the first one."""
    for i, x in enumerate(elements, start):
        if type(x) is str:  # the common case, first
            continue
        if x is None:
            if i:
                raise PathError(
                    f"None is only allowed as the first path element (it names the "
                    f"system tree), not at position {i}"
                )
            continue
        if isinstance(x, Path):
            raise PathError(f"element {i} is a Path; use '+' to concatenate paths")
        _check_value(x, f"element {i}")


def _float_lit(x: float) -> str:
    # repr() round-trips every finite float; infinities use a literal that
    # ast.literal_eval reads back as inf (repr would give the name 'inf').
    if x in (math.inf, -math.inf):
        return "1e999" if x > 0 else "-1e999"
    return repr(x)


def _lit(x: Any) -> str:
    """Python literal text of a value inside a tuple, compact (no spaces)."""
    t = type(x)
    if t is float:
        return _float_lit(x)
    if t is tuple:
        if len(x) == 1:
            return f"({_lit(x[0])},)"
        return "(" + ",".join(map(_lit, x)) + ")"
    return repr(x)


def _esc(s: str) -> str:
    return s.replace(":", "::").replace(".", ":.").replace(" ", ":_")


class Path(tuple):
    """An immutable sequence of path elements; see the module docstring.

    ``Path("a", 1)`` builds a path from elements (a string is *not* parsed: use
    :func:`P` / :meth:`from_str` for that). Equality and hashing are the tuple's, so
    ``Path("a") == ("a",)``.
    """

    __slots__ = ()

    def __new__(cls, *elements: Any) -> Path:
        _check_elements(elements)
        return tuple.__new__(cls, elements)

    @classmethod
    def build(cls, data: Iterable[Any]) -> Path:
        """Make a path from an iterable of elements, validating them.

        A :class:`Path` is returned unchanged. Use this for data from outside (the
        wire, storage): it rejects anything that is not a valid path.
        """
        if type(data) is cls:
            return data
        data = tuple(data)
        _check_elements(data)
        return tuple.__new__(cls, data)

    @classmethod
    def _from_tuple(cls, data: tuple) -> Path:
        """Wrap an already-valid tuple without checking it (internal hot path)."""
        return tuple.__new__(cls, data)

    def __getnewargs__(self) -> tuple:
        # tuple's version would hand the whole tuple to __new__ as one element
        return tuple(self)

    # --- combining -----------------------------------------------------------

    def __truediv__(self, elem: Any) -> Path:
        """``p / elem``: append one element."""
        _check_elements((elem,), len(self))
        return tuple.__new__(Path, (*self, elem))

    def __add__(self, other: Any) -> Path:
        """``p + other``: concatenate with a path, tuple or list."""
        if type(other) is Path:
            if self and other and other[0] is None:
                raise PathError(
                    "cannot append a system path (starting with None) to a non-empty path"
                )
        elif isinstance(other, tuple | list):
            other = tuple(other)
            _check_elements(other, len(self))
        else:
            return NotImplemented
        return tuple.__new__(Path, tuple.__add__(self, other))

    def __radd__(self, other: Any) -> Path:
        """``(tuple or list) + p``: the result is a Path too."""
        if not isinstance(other, tuple | list):
            return NotImplemented
        other = tuple(other)
        _check_elements(other)
        if other and self and self[0] is None:
            raise PathError("cannot append a system path (starting with None) to a non-empty path")
        return tuple.__new__(Path, other + tuple(self))

    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, key: slice) -> Path: ...

    def __getitem__(self, key):
        """Indexing gives an element, slicing gives a Path."""
        res = tuple.__getitem__(self, key)
        if type(key) is slice:
            if key.step is None or key.step == 1:
                # a forward slice cannot move a leading None elsewhere
                return tuple.__new__(Path, res)
            _check_elements(res)
            return tuple.__new__(Path, res)
        return res

    # --- strings -------------------------------------------------------------

    def __str__(self) -> str:
        """The colon/dot string form; ``P(str(p)) == p`` always holds."""
        if not self:
            return ":"
        res: list[str] = []
        for x in self:
            t = type(x)
            if t is str:
                if x:
                    if res:
                        res.append(".")
                    res.append(x.replace(":", "::").replace(".", ":.").replace(" ", ":_"))
                else:
                    res.append(":e")
            elif t is int:
                res.append(f":{x}")
            elif x is True:
                res.append(":t")
            elif x is False:
                res.append(":f")
            elif x is None:
                res.append(":n")
            elif t is bytes:
                if _PRINTABLE.fullmatch(x):
                    res.append(":v" + _esc(x.decode("ascii")))
                else:
                    res.append(":y" + x.hex())
            elif t is float:
                res.append(":" + _float_lit(x).replace(".", ":."))
            else:  # tuple
                res.append(":" + _esc(_lit(x)))
        return "".join(res)

    def __repr__(self) -> str:
        return f"P({str(self)!r})"

    @classmethod
    def from_str(cls, s: str) -> Path:
        """Parse the string form (see the module docstring)."""
        if type(s) is not str:
            raise PathError(f"a path string must be a str, not {type(s).__name__}")
        if s == ":":
            return _EMPTY
        if not s:
            raise PathError("the empty string is not a path (the empty path is ':')")
        return _Parser(s).run()


_EMPTY = Path._from_tuple(())

# parser states
_START, _IN_PART, _AFTER_ELEM, _AFTER_DOT = range(4)

_ATOMS = {"t": True, "f": False, "n": None, "e": ""}


class _Parser:
    """One-shot parser for :meth:`Path.from_str`, mirroring moat.util's grammar."""

    __slots__ = ("s", "res", "buf", "kind", "kind_pos")

    def __init__(self, s: str):
        self.s = s
        self.res: list[Any] = []
        self.buf: list[str] = []
        self.kind = ""  # "" = plain string; else the escape letter ("i" = literal)
        self.kind_pos = 0

    def err(self, msg: str, pos: int) -> PathError:
        return PathError(f"{msg} in path {self.s!r} at position {pos}")

    def add(self, x: Any, pos: int) -> None:
        if x is None and self.res:
            raise self.err(
                "None (':n') is only allowed as the first element (it names the system tree)",
                pos,
            )
        self.res.append(x)

    def finish(self) -> None:
        """Convert the collected text of the current element and append it."""
        text = "".join(self.buf)
        kind = self.kind
        pos = self.kind_pos
        if not kind:
            self.res.append(text)
            return
        if kind == "x":
            if not _HEX_INT.fullmatch(text):
                raise self.err(f"':x' needs a hex number, not {text!r}", pos)
            val: Any = int(text, 16)
        elif kind == "b":
            if not _BIN_INT.fullmatch(text):
                raise self.err(f"':b' needs a binary number, not {text!r}", pos)
            val = int(text, 2)
        elif kind == "y":
            if not _HEX_BYTES.fullmatch(text):
                raise self.err(f"':y' needs pairs of hex digits, not {text!r}", pos)
            val = bytes.fromhex(text)
        elif kind == "v":
            val = text.encode("utf-8")
        elif kind == "s":
            try:
                val = b64decode(text.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raise self.err(f"':s' needs base64 data, not {text!r}", pos) from None
        else:  # "i": a Python literal, parsed safely
            try:
                import ast  # only ':'-escaped literals pay for it (one-shot CLI start-up)

                val = ast.literal_eval(text)
            except Exception:  # SyntaxError, ValueError, RecursionError, MemoryError ...
                raise self.err(f"cannot parse {text!r} as a Python literal", pos) from None
            if val is not None:
                try:
                    _check_value(val, "literal")
                except PathError as exc:
                    raise self.err(str(exc), pos) from None
        self.add(val, pos)

    def run(self) -> Path:
        s = self.s
        toks = [(m.start(), m.group()) for m in _TOKEN.finditer(s)]
        n = len(toks)
        state = _START
        buf = self.buf
        i = 0
        while i < n:
            pos, tok = toks[i]
            i += 1
            if tok == ".":
                if state == _IN_PART:
                    self.finish()
                elif state == _START:
                    raise self.err("a path cannot start with '.'", pos)
                elif state == _AFTER_DOT:
                    raise self.err("empty element ('..'); write ':e' for an empty string", pos)
                state = _AFTER_DOT
                continue

            if tok == ":":
                if i == n:
                    raise self.err("dangling ':' at the end", pos)
                e = toks[i][1]
                i += 1
                if e in (":", ".", "_"):  # inline escape: part of a string
                    ch = " " if e == "_" else e
                    if state == _IN_PART:
                        buf.append(ch)
                        continue
                    if state == _AFTER_ELEM:
                        raise self.err("a string after a non-string element needs a '.'", pos)
                    buf.clear()
                    buf.append(ch)
                    self.kind = ""
                    state = _IN_PART
                    continue
                # a new element; ends the current one
                if state == _IN_PART:
                    self.finish()
                if e in _ATOMS:
                    self.add(_ATOMS[e], pos)
                    state = _AFTER_ELEM
                    continue
                buf.clear()
                c = e[0]
                if c in "xbyvsi":
                    self.kind = c
                    buf.append(e[1:])
                else:
                    self.kind = "i"
                    buf.append(e)
                self.kind_pos = pos
                state = _IN_PART
                continue

            # ordinary text, including a bare "_"
            if state == _IN_PART:
                buf.append(tok)
            elif state == _AFTER_ELEM:
                raise self.err(f"missing '.' before {tok!r}", pos)
            else:
                buf.clear()
                buf.append(tok)
                self.kind = ""
                state = _IN_PART

        if state == _IN_PART:
            self.finish()
        elif state == _AFTER_DOT:
            raise self.err("a path cannot end with '.'", len(s))
        return Path._from_tuple(tuple(self.res))


def P(s: str | Path) -> Path:
    """Parse a path string (``P("a.b:5")``); an existing Path is returned as-is."""
    if isinstance(s, Path):
        return s
    return Path.from_str(s)


def as_path(p: Any) -> Path:
    """A path from what API callers pass: a Path, its string form, or a sequence of
    elements (the one conversion both clients use)."""
    if isinstance(p, Path):
        return p
    if isinstance(p, str):
        return P(p)
    return Path.build(p)


def sort_key(element: Any) -> tuple:
    """A key that orders mixed-type path elements deterministically.

    Python refuses to compare e.g. ``1 < "a"``, yet a node's children may mix types.
    Order: None < bool < numbers < str < bytes < tuple; numbers by value (an int
    before an equal float), tuples element-wise by this same key.
    """
    t = type(element)
    if t is str:
        return (3, element)
    if t is int:
        return (2, element, False)
    if t is float:
        return (2, element, True)
    if t is bool:
        return (1, element)
    if element is None:
        return (0,)
    if t is bytes:
        return (4, element)
    if isinstance(element, tuple):
        return (5, tuple(map(sort_key, element)))
    raise PathError(f"cannot sort a path element of type {t.__name__}")
