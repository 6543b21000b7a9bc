"""Compact sets of ticks: which of one origin node's changes a replica knows about.

Replication bookkeeping is "for each origin node, which of its ticks have I seen?". Ticks
are numbered 1, 2, 3, ... without gaps, and a healthy replica has seen almost all of
them, so the set is stored as sorted, disjoint, non-adjacent half-open ranges
``[start, end)`` in one flat list ``[s0, e0, s1, e1, ...]``: a node that has seen a
million changes without loss stores two ints. Gaps (missing data) are the holes below
the highest tick known to exist.

Adding the next tick (the common case) is an O(1) append-in-place; anything else is a
bisect plus a small list splice. The wire/persistence form is a plain list of
``[start, end]`` pairs (:meth:`TickSet.to_list` / :meth:`TickSet.from_list`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator


class TickSet:
    """A set of positive ints, kept as half-open ranges."""

    __slots__ = ("_r",)

    def __init__(self, ranges: Iterable[Iterable[int]] = ()):
        self._r: list[int] = []
        for s, e in ranges:
            self.add_range(s, e)

    # --- construction / serialisation ------------------------------------------------

    @classmethod
    def from_list(cls, data: Iterable[Iterable[int]]) -> TickSet:
        """Build from the wire form ``[[start, end], ...]`` (any order, may overlap)."""
        return cls(data)

    def to_list(self) -> list[list[int]]:
        """The wire form: a list of ``[start, end]`` pairs, sorted, half-open."""
        r = self._r
        return [[r[i], r[i + 1]] for i in range(0, len(r), 2)]

    def copy(self) -> TickSet:
        n = TickSet()
        n._r = self._r[:]
        return n

    # --- queries -----------------------------------------------------------------------

    def __contains__(self, tick: int) -> bool:
        # odd insertion point <=> inside a [start, end) range
        return bisect_right(self._r, tick) & 1 == 1

    def __len__(self) -> int:
        r = self._r
        return sum(r[i + 1] - r[i] for i in range(0, len(r), 2))

    def __bool__(self) -> bool:
        return bool(self._r)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TickSet):
            return NotImplemented
        return self._r == other._r

    def __hash__(self) -> int:  # mutable: unhashable like set
        raise TypeError("unhashable type: 'TickSet'")

    def __repr__(self) -> str:
        return f"TickSet({self.to_list()!r})"

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The ``(start, end)`` ranges in ascending order."""
        r = self._r
        for i in range(0, len(r), 2):
            yield r[i], r[i + 1]

    def __iter__(self) -> Iterator[int]:
        """Every tick, ascending (beware of huge sets)."""
        for s, e in self.ranges():
            yield from range(s, e)

    @property
    def max(self) -> int:
        """The highest tick in the set, 0 if empty."""
        return self._r[-1] - 1 if self._r else 0

    @property
    def prefix(self) -> int:
        """The highest ``n`` with ``1..n`` all present (0 if tick 1 is missing).

        This is what the purge horizon compares: "has seen everything up to n".
        """
        r = self._r
        if r and r[0] <= 1:
            return r[1] - 1
        return 0

    def missing(self, upto: int, start: int = 1) -> list[tuple[int, int]]:
        """Half-open ranges of ticks in ``start..upto`` (inclusive) not in the set."""
        out = []
        pos = start
        end = upto + 1
        if pos >= end:
            return out
        r = self._r
        i = bisect_right(r, pos)
        if i & 1:  # pos is inside a range: skip to its end
            pos = r[i]
            i += 1
        while pos < end:
            if i >= len(r):
                out.append((pos, end))
                break
            s = r[i]
            if s >= end:
                out.append((pos, end))
                break
            if s > pos:
                out.append((pos, s))
            pos = r[i + 1]
            i += 2
        return out

    # --- mutation ------------------------------------------------------------------------

    def add(self, tick: int) -> None:
        """Add one tick. Appending the next tick after the highest range is O(1)."""
        r = self._r
        if r:
            last = r[-1]
            if tick == last:
                r[-1] = last + 1
                return
            if tick < last and tick >= r[-2]:
                return
        self.add_range(tick, tick + 1)

    def add_range(self, start: int, end: int) -> None:
        """Add the half-open range ``[start, end)``; empty ranges are ignored."""
        if start >= end:
            return
        r = self._r
        # ranges that overlap or touch [start, end) get merged
        i = bisect_left(r, start)
        j = bisect_right(r, end)
        # i even: start lies before range i//2 (or in a gap); i odd: inside/touching range
        if i & 1:
            i -= 1
            start = r[i]
        if j & 1:
            end = r[j]
            j += 1
        r[i:j] = [start, end]

    def update(self, other: TickSet | Iterable[Iterable[int]]) -> None:
        """In-place union."""
        rs = other.ranges() if isinstance(other, TickSet) else other
        for s, e in rs:
            self.add_range(s, e)

    def __or__(self, other: TickSet) -> TickSet:
        n = self.copy()
        n.update(other)
        return n

    union = __or__

    def __and__(self, other: TickSet) -> TickSet:
        """Intersection (two-pointer sweep over both range lists)."""
        a, b = self._r, other._r
        out = TickSet()
        o = out._r
        i = j = 0
        while i < len(a) and j < len(b):
            s = max(a[i], b[j])
            e = min(a[i + 1], b[j + 1])
            if s < e:
                o.append(s)
                o.append(e)
            if a[i + 1] < b[j + 1]:
                i += 2
            else:
                j += 2
        return out

    intersection = __and__

    def __sub__(self, other: TickSet) -> TickSet:
        """Difference: ticks in ``self`` that are not in ``other``."""
        out = TickSet()
        for s, e in self.ranges():
            for gs, ge in other.missing(e - 1, s):
                out._r.append(gs)
                out._r.append(ge)
        return out

    difference = __sub__

    def issubset(self, other: TickSet) -> bool:
        return not (self - other)
