"""Outgoing replication messages waiting for the bus, bounded in bytes.

Why a byte bound of its own, in front of the bus's offline queue: while the broker is
away a node under load writes tens of thousands of updates a second. Handed to the bus
one small payload per batch, they filled its ``max_pending`` (a count of messages,
10,000) within seconds; the rest was left to repair, which had to find each lost tick
by scanning the whole tree (a 20 s outage at 28k writes/s took 42 s to converge). Kept
here, packed (about 90 bytes for a small write), they go out on reconnect as large bus
messages, in order, at bus speed: the peers apply them as they would have live. Memory
is bounded by ``server.outage_backlog_mb``; past it messages are refused (counted as
``overflow``, and repaired by the peers as before).

Pure: no bus, no trio. :class:`BusLink <.buslink.BusLink>` feeds it and drains it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["HeldMessages"]


class HeldMessages:
    """Packed messages by topic, in order, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int):
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        #: bytes held now
        self.bytes = 0
        self._count = 0
        self._topics: dict[str, deque[bytes]] = {}

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def add(self, topic: str, packed: bytes) -> bool:
        """Hold ``packed`` for ``topic``; False (and nothing held) if that would exceed
        the bound."""
        n = len(packed)
        if self.bytes + n > self.max_bytes:
            return False
        q = self._topics.get(topic)
        if q is None:
            q = self._topics[topic] = deque()
        q.append(packed)
        self.bytes += n
        self._count += 1
        return True

    def take(self, max_bytes: int | None = None) -> list[tuple[str, list[bytes]]]:
        """Remove and return held messages, oldest first per topic, about ``max_bytes``
        of them (at least one message if any is held; None: all)."""
        out: list[tuple[str, list[bytes]]] = []
        if max_bytes is None:
            out = [(t, list(q)) for t, q in self._topics.items()]
            self._topics = {}
            self.bytes = 0
            self._count = 0
            return out
        budget = max_bytes
        for topic in list(self._topics):
            q = self._topics[topic]
            got: list[bytes] = []
            while q and (budget > 0 or not (got or out)):
                p = q.popleft()
                budget -= len(p)
                self.bytes -= len(p)
                got.append(p)
            self._count -= len(got)
            if got:
                out.append((topic, got))
            if not q:
                del self._topics[topic]
            if budget <= 0:
                break
        return out
