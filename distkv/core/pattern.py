"""Path patterns and their specificity: the one module for both (pure, no I/O).

Patterns bind types and codecs to parts of the tree (:class:`PatternMap`), and ACL
rules are patterns too (:mod:`.acl` compiles them into a trie and ranks its rules with
:func:`pattern_key`). So what a wildcard is and which pattern is more specific are
decided here, once.

A pattern is a tuple of path elements in which two strings are wildcards:

* ``"+"`` matches exactly one element;
* ``"#"`` matches zero or more elements, anywhere in the pattern: ``stats.#.quota``
  covers ``stats.quota``, ``stats.a.quota`` and ``stats.a.b.quota``.

(ACL patterns allow ``"#"`` only at the end, which lets them compile into a trie; type
and codec bindings are few, so a first-element index and a linear scan are enough.)

**Most specific pattern wins**, with the ACLs' order: compare element by element from
the left; a literal beats ``"+"``, ``"+"`` beats the end of the pattern, the end beats
``"#"``. So ``stats.a.quota`` > ``stats.+.quota`` > ``stats.#.quota`` > ``stats.#``.

Wildcards never match the leading ``None`` of a system path: a pattern must name it.
Elements compare as dict keys do (as in the tree): ``1``, ``1.0`` and ``True`` are one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..exceptions import DistKVError, PathError
from .path import Path
from .types import NotGiven

logger = logging.getLogger(__name__)

__all__ = [
    "HASH",
    "PLUS",
    "PatternMap",
    "check_pattern",
    "is_hash",
    "is_plus",
    "pattern_key",
    "pattern_matches",
]

PLUS = "+"
"""Matches exactly one element."""
HASH = "#"
"""Matches zero or more elements."""
_WILD = (PLUS, HASH)


def _is(e: Any, w: str) -> bool:
    return type(e) is str and e == w


def is_plus(e: Any) -> bool:
    """Whether the pattern element ``e`` is the ``"+"`` wildcard (a ``str``: ``b"+"``
    is a literal)."""
    return type(e) is str and e == PLUS


def is_hash(e: Any) -> bool:
    """Whether the pattern element ``e`` is the ``"#"`` wildcard."""
    return type(e) is str and e == HASH


def check_pattern(pattern: Iterable[Any]) -> tuple:
    """A pattern as a tuple; ``PathError`` if it cannot match anything sensible."""
    pat = tuple(pattern)
    for i, e in enumerate(pat):
        if e is None and i:
            raise PathError("None may only be the first element of a pattern")
        if _is(e, "#") and i + 1 < len(pat) and _is(pat[i + 1], "#"):
            raise PathError("two '#' in a row in a pattern")
    return pat


def pattern_key(pattern: tuple) -> tuple:
    """Specificity: the larger key is the more specific pattern (see module doc).

    Literal 4, ``"+"`` 3, the end of a pattern not ending in ``"#"`` 2, ``"#"`` 1,
    compared as tuples. Two different patterns never tie."""
    key = [3 if _is(e, "+") else 1 if _is(e, "#") else 4 for e in pattern]
    if not (pattern and _is(pattern[-1], "#")):
        key.append(2)
    return tuple(key)


def pattern_matches(pattern: tuple, path: tuple) -> bool:
    """Does ``pattern`` cover ``path``? (glob matching: ``#`` is ``*``, ``+`` is ``?``)"""
    if path and path[0] is None and (not pattern or pattern[0] is not None):
        return False
    pi = 0
    ei = 0
    star = -1  # position in pattern after the last '#' seen
    star_e = 0  # path position that '#' is currently made to cover up to
    n_pat, n_path = len(pattern), len(path)
    while ei < n_path:
        if pi < n_pat:
            pe = pattern[pi]
            if _is(pe, "#"):
                star = pi + 1
                star_e = ei
                pi += 1
                continue
            if _is(pe, "+") or pe == path[ei]:
                pi += 1
                ei += 1
                continue
        if star >= 0:  # let the last '#' swallow one more element and retry
            star_e += 1
            ei = star_e
            pi = star
            continue
        return False
    while pi < n_pat and _is(pattern[pi], "#"):
        pi += 1
    return pi == n_pat


class PatternMap:
    """Patterns mapped to payloads; :meth:`lookup` finds the most specific match."""

    __slots__ = ("_items", "_keys", "_by_first", "_wild_first")

    def __init__(self) -> None:
        self._items: dict[tuple, Any] = {}
        self._keys: dict[tuple, tuple] = {}
        self._by_first: dict[Any, list[tuple]] = {}
        self._wild_first: list[tuple] = []  # patterns starting with a wildcard, or empty

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def items(self) -> Iterator[tuple[tuple, Any]]:
        return iter(list(self._items.items()))

    def _bucket(self, pattern: tuple) -> list[tuple]:
        if not pattern or (type(pattern[0]) is str and pattern[0] in _WILD):
            return self._wild_first
        return self._by_first.setdefault(pattern[0], [])

    def set(self, pattern: Iterable[Any], payload: Any) -> None:
        pat = check_pattern(pattern)
        if pat not in self._items:
            self._bucket(pat).append(pat)
            self._keys[pat] = pattern_key(pat)
        self._items[pat] = payload

    def delete(self, pattern: Iterable[Any]) -> None:
        pat = tuple(pattern)
        if pat not in self._items:
            return
        del self._items[pat]
        del self._keys[pat]
        bucket = self._bucket(pat)
        bucket.remove(pat)
        if not bucket and bucket is not self._wild_first:
            del self._by_first[pat[0]]

    def bind(self, pattern: tuple, value: Any, payload_of: Callable[[Any], Any], what: str) -> None:
        """Follow a stored binding entry (a type match, a converter rule) as it
        changes: ``NotGiven`` removes it; a pattern that cannot match is ignored; a
        value whose payload cannot be read binds ``None``, so the paths stay guarded
        (fail closed). Logged, never raised: the entry may come from another node."""
        if value is NotGiven:
            self.delete(pattern)
            return
        try:
            check_pattern(pattern)
        except PathError as exc:
            logger.error("%s %s is ignored: %s", what, pattern, exc)
            return
        try:
            payload = payload_of(value)
        except (DistKVError, AttributeError, TypeError) as exc:
            payload = None
            logger.error("%s %s is unusable: %s", what, Path(*pattern), exc)
        self.set(pattern, payload)

    def lookup(self, path: tuple) -> tuple[tuple, Any] | None:
        """``(pattern, payload)`` of the most specific pattern covering ``path``."""
        best = None
        best_key: tuple = ()
        cands = self._by_first.get(path[0], ()) if path else ()
        for group in (cands, self._wild_first):
            for pat in group:
                k = self._keys[pat]
                if (best is None or k > best_key) and pattern_matches(pat, path):
                    best, best_key = pat, k
        return None if best is None else (best, self._items[best])
