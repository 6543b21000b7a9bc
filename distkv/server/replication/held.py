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
from collections.abc import Iterable
from typing import Protocol

from ...core.ticks import TickSet

__all__ = ["HeldMessages", "bus_payload", "not_held", "peers_back"]


class _Peer(Protocol):
    online: bool
    last_ms: int


def peers_back(peers: Iterable[_Peer], since_ms: int) -> bool:
    """Whether every peer that is online, as far as we know, has been heard from
    (presence) since ``since_ms``: the moment our bus came back.

    Why the backlog waits for this: messages are not kept by the broker for a node that
    is not connected (clean sessions), and after a broker restart the nodes reconnect
    in any order, up to the bus's ``max_backoff`` apart. A backlog sent before a peer
    was back was lost for it and had to be repaired (one run: 9 repair requests, each a
    scan of node one's tree, 1.3 s client round trips). A peer's presence is published
    once its subscriptions are in place, so once it is heard, it gets what follows.
    A peer that said goodbye (offline presence) is not waited for; one that vanished
    without a will is waited for until the caller's timeout."""
    return all(not p.online or p.last_ms >= since_ms for p in peers)


def bus_payload(chunk: bytes, count: int) -> bytes:
    """One bus payload from a chunk :meth:`HeldMessages.take` returns: one message as
    itself, several (``chunk`` holds them concatenated) as a msgpack array (``0xdd``
    array32 header + the messages)."""
    if count == 1:
        return chunk
    return b"\xdd" + count.to_bytes(4, "big") + chunk


#: Messages for one topic are packed into chunks of at most this many bytes (one
#: message larger than that is a chunk of its own): a chunk is one bus payload.
CHUNK_BYTES = 64 * 1024


class HeldMessages:
    """Packed messages by topic, in order, at most ``max_bytes`` in all, packed as
    they arrive into chunks of up to ``chunk_bytes`` (one bus payload each).

    Chunks, not one bytes object per message: a small update is ~90 bytes, and a
    bytes object of its own would add ~40 more that the bound would not see.

    A message may carry a tick (this node's own updates do): :meth:`ticks` tells
    which are still held, so that a repair request for them need not be answered
    (they are on their way; see :func:`not_held`). Kept as runs, a few ints per
    outage, not one per message."""

    def __init__(self, max_bytes: int, chunk_bytes: int = CHUNK_BYTES):
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        #: bytes held now
        self.bytes = 0
        self._count = 0
        # per topic: chunks [bytearray of concatenated messages, message count]
        self._topics: dict[str, deque[list]] = {}
        # per topic, the ticks of its held messages in order: runs [first tick, count]
        # (first tick None: messages without a tick)
        self._runs: dict[str, deque[list]] = {}

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def add(self, topic: str, packed: bytes, tick: int | None = None) -> bool:
        """Hold ``packed`` for ``topic`` (``tick``: the own write it carries, if any);
        False (and nothing held) if that would exceed the bound."""
        n = len(packed)
        if self.bytes + n > self.max_bytes:
            return False
        q = self._topics.get(topic)
        if q is None:
            q = self._topics[topic] = deque()
            self._runs[topic] = deque()
        last = q[-1] if q else None
        if last is not None and len(last[0]) + n <= self.chunk_bytes:
            last[0] += packed
            last[1] += 1
        else:
            q.append([bytearray(packed), 1])
        self.bytes += n
        self._count += 1
        runs = self._runs[topic]
        run = runs[-1] if runs else None
        if run is not None and (
            (tick is None and run[0] is None)
            or (tick is not None and run[0] is not None and run[0] + run[1] == tick)
        ):
            run[1] += 1
        else:
            runs.append([tick, 1])
        return True

    def take(self, max_bytes: int | None = None) -> list[tuple[str, list[tuple[bytes, int]]]]:
        """Remove and return held chunks ``(concatenated messages, how many)``, oldest
        first per topic: whole chunks up to about ``max_bytes`` (at least one if any
        is held; None: all)."""
        out: list[tuple[str, list[tuple[bytes, int]]]] = []
        budget = max_bytes
        for topic in list(self._topics):
            q = self._topics[topic]
            got: list[tuple[bytes, int]] = []
            count = 0
            while q and (budget is None or budget > 0 or not (got or out)):
                buf, k = q.popleft()
                if budget is not None:
                    budget -= len(buf)
                self.bytes -= len(buf)
                count += k
                got.append((bytes(buf), k))
            if got:
                self._count -= count
                out.append((topic, got))
                self._drop_runs(topic, count)
            if not q:
                del self._topics[topic]
                del self._runs[topic]
            if budget is not None and budget <= 0:
                break
        return out

    def _drop_runs(self, topic: str, n: int) -> None:
        runs = self._runs[topic]
        while n:
            run = runs[0]
            k = min(n, run[1])
            if run[0] is not None:
                run[0] += k
            run[1] -= k
            n -= k
            if not run[1]:
                runs.popleft()

    def ticks(self) -> TickSet:
        """The ticks of the held messages that carry one."""
        out = TickSet()
        for runs in self._runs.values():
            for t, k in runs:
                if t is not None:
                    out.add_range(t, t + k)
        return out


def not_held(ranges: list, held: HeldMessages) -> list:
    """The part of a repair request for this node's own ``ranges`` that is not in
    ``held``: the rest is on its way (after a reconnect, in the backlog). Answering
    those ticks cost
    a tree scan each time a peer that was back before the backlog went out (see
    :func:`peers_back`) asked for them. Nothing is lost by not answering: a requester
    asks again after its backoff."""
    if not held:
        return ranges
    return (TickSet.from_list(ranges) - held.ticks()).to_list()
