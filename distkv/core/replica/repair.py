"""Repair: asking for missing ticks, and finding what a peer asks for.

A gap (ticks missing below the highest tick known for an origin) is requested once it
has not shrunk for ``repair_delay_ms`` (reordered messages arrive meanwhile, and after
a broker outage the origin's backlog), with exponential backoff per origin (reset on
progress) and at most ``max_repair_ticks`` per request (:class:`RepairSchedule`).

To answer, the responder must find the entry whose chain holds a tick. A full index
costs ~200 bytes per chain link; :class:`RecentWrites` keeps two bounded rings
instead (this node's own last writes, indexed by tick, and the last received
updates); what they miss is found by one scan of the tree per request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .messages import Repair

__all__ = ["RecentWrites", "RepairSchedule"]


class RecentWrites:
    """Paths of recent writes by ``(origin, tick)``: this node's own last
    ``ring_size`` writes (O(1) by tick) and the last ``ring_size`` received updates.

    A hit is exact: a (node, tick) write happened at exactly one path, and once it
    leaves that entry's chain it never comes back."""

    def __init__(self, name: str, ring_size: int):
        self.name = name
        self._own: deque = deque(maxlen=ring_size)
        self._own_last = 0  # tick of the last path in _own
        self._recent: deque = deque(maxlen=ring_size)

    def own(self, tick: int, path: tuple) -> None:
        """This node wrote ``path`` as ``tick``."""
        if tick != self._own_last + 1:
            self._own.clear()
        self._own.append(path)
        self._own_last = tick

    def received(self, node: str, tick: int, path: tuple) -> None:
        """An update of ``node`` as ``tick`` at ``path`` arrived."""
        self._recent.append((node, tick, path))

    def find(self, origin: str, ticks: set[int]) -> dict[int, tuple]:
        """The paths of those of ``ticks`` of ``origin`` that the rings hold."""
        paths: dict[int, tuple] = {}
        if origin == self.name and self._own:
            last = self._own_last
            first = last - len(self._own) + 1
            ring = self._own
            for t in ticks:
                if first <= t <= last:
                    paths[t] = ring[t - first]
        if len(paths) < len(ticks):
            for n, t, p in self._recent:
                if n == origin and t in ticks:
                    paths[t] = p
        return paths


class RepairSchedule:
    """When to ask whom for which missing ticks (per origin: next time, attempts,
    how many were missing last time, when the gap was first seen or last asked for)."""

    def __init__(self, name: str, *, delay_ms: int, backoff_ms: int, max_backoff_ms: int,
                 max_ticks: int):  # fmt: skip
        self.name = name
        self.delay_ms = delay_ms
        self.backoff_ms = backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.max_ticks = max_ticks
        # origin -> [next_ms, attempts, missing, since_ms]
        self._state: dict[str, list[int]] = {}

    def requests(
        self,
        gaps: dict[str, list[tuple[int, int]]],
        horizon: dict[str, int],
        pick_peer: Callable[[str, int, int, int], str | None],
        now_ms: int,
    ) -> list[Repair]:
        """The repair requests due now for ``gaps`` (``Replica.gaps``).
        ``pick_peer(origin, first tick, attempt, now_ms)`` chooses whom to ask."""
        out: list[Repair] = []
        st_all = self._state
        for o in [o for o in st_all if o not in gaps]:
            del st_all[o]
        for o, g in gaps.items():
            count = sum(b - a for a, b in g)
            st = st_all.get(o)
            if st is None:
                st_all[o] = [now_ms + self.delay_ms, 0, count, now_ms]
                continue
            if count < st[2]:
                # progress: reset the backoff, and ask for the next batch once the gap
                # has stopped shrinking for delay_ms, not after the backoff (a long gap
                # is repaired batch after batch). Not sooner: while the gap shrinks,
                # what fills it is on its way (after a broker outage: the peer's
                # backlog, 500k updates in order), and asking for it again would make
                # the peer scan its tree for what we are about to get (and us apply it
                # twice). Bounded: a gap is asked for at the latest max_backoff_ms
                # after it was first seen or last asked for, shrinking or not.
                st[1] = 0
                st[0] = min(now_ms + self.delay_ms, st[3] + self.max_backoff_ms)
            st[2] = count
            if now_ms < st[0]:
                continue
            peer = pick_peer(o, g[0][0], st[1], now_ms)
            if peer is None:
                st[0] = now_ms + self.delay_ms
                continue
            ranges = []
            budget = self.max_ticks
            for a, b in g:
                if b - a > budget:
                    b = a + budget
                ranges.append([a, b])
                budget -= b - a
                if budget <= 0:
                    break
            out.append(Repair(peer, self.name, o, ranges, dict(horizon)))
            st[3] = now_ms
            st[1] += 1
            st[0] = now_ms + min(self.backoff_ms << min(st[1] - 1, 20), self.max_backoff_ms)
        return out
