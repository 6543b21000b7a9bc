"""Tombstone purging, in two phases (see the package docstring).

(1) A tombstone ``(X, t)`` becomes a candidate once every member has seen everything
of ``X`` up to ``t`` (minimum seen prefix); we note each member's current tick, which
bounds the writes that could be concurrent with the delete. (2) At a later purge tick,
if every member has seen all of those ticks (and everything we know of non-members)
and the member set has not grown, the candidates go and the minimum prefix becomes
the purge horizon.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import tree as trees
from ..ticks import TickSet

__all__ = ["Purger"]

Candidate = tuple[tuple, str, int]  # (path, node, tick) of a tombstone


class Purger:
    """The tombstones a replica remembers and the purge epoch in progress."""

    def __init__(self, interval_ms: int):
        self.interval_ms = interval_ms
        self.next_ms = interval_ms
        self._tombstones: dict[tuple, None] = {}
        self._epoch: tuple[dict[str, int], list[Candidate]] | None = None

    @property
    def count(self) -> int:
        return len(self._tombstones)

    def note(self, path: tuple) -> None:
        """``path`` holds a tombstone now."""
        self._tombstones[path] = None

    def discard(self, path: tuple) -> None:
        self._tombstones.pop(path, None)

    def paused(self, now_ms: int, settle_ms: int) -> None:
        """We were asleep (suspended, stopped): our view of the peers is stale, so no
        purge decisions until fresh presence has had time to arrive."""
        self._epoch = None
        self.next_ms = max(self.next_ms, now_ms + settle_ms)

    def due(self, now_ms: int) -> bool:
        """Whether a purge tick is due; if so the next one is scheduled."""
        if now_ms < self.next_ms:
            return False
        self.next_ms = now_ms + self.interval_ms
        return True

    def settle(
        self, names: set[str], min_prefix: dict[str, int], seen: dict[str, TickSet]
    ) -> list[Candidate] | None:
        """Phase 2 of the epoch in progress. Returns the candidates that may go now
        (then ``min_prefix`` is the new horizon), ``[]`` if there was no epoch or it
        was abandoned (someone (re)appeared), or None while it must wait (no new
        candidates are collected meanwhile)."""
        ep = self._epoch
        if ep is None:
            return []
        ticks, cands = ep
        if not names <= ticks.keys():
            self._epoch = None  # someone (re)appeared: start over
            return []
        if all(min_prefix.get(o, 0) >= t for o, t in ticks.items()) and all(
            min_prefix.get(o, 0) >= s.max for o, s in seen.items() if o not in names
        ):
            # (the second test: writes of nodes that are not live, which could be
            # concurrent with the delete, must have reached everybody first)
            self._epoch = None
            return cands
        return None

    def collect(
        self,
        lookup: Callable[[tuple], trees.Entry | None],
        min_prefix: dict[str, int],
        ticks: dict[str, int],
    ) -> None:
        """Phase 1: tombstones that every member has seen become candidates;
        ``ticks`` are the members' current ticks (ours included)."""
        cands = []
        tombs = self._tombstones
        for path in list(tombs):
            e = lookup(path)
            if e is None or not e.is_tombstone:
                del tombs[path]
                continue
            if e.tick <= min_prefix.get(e.node, 0):
                cands.append((path, e.node, e.tick))
        if cands:
            self._epoch = (ticks, cands)
