"""Which tree write the gateway starts next (pure, no I/O; the shell's workers do them).

Device messages arrive faster than one ``set`` round trip (a burst of 5,000 a second on
one topic; a house of sensors reporting at once). Awaiting each write in turn caps the
gateway at one round trip per message, so the shell keeps several writes in flight on
its one client connection, with two rules that keep the tree right:

* **At most one write per entry in flight.** The server handles the requests of one
  connection in order, but a write re-sent after a reconnect, or two tasks racing to
  send, could swap two values of one entry; one at a time per entry cannot. It also
  keeps ``Devices.begin_write``/``end_write`` (echo suppression by ``(node, tick)``)
  exact: there is never a second write of that entry whose link is still unknown.
* **Newest value wins while one is in flight.** A newer value of an entry whose write
  is in flight or still waiting replaces the waiting one (it keeps its place in the
  queue): the tree skips values the device has already overwritten, never reorders
  them, and ends on the device's last word. Nothing queues without bound: at most one
  waiting write per entry.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["WriteQueue"]

T = TypeVar("T")


class WriteQueue(Generic[T]):
    """Writes keyed by entry (the tree path), in arrival order of their entries."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, T] = {}  # key -> newest item; insertion = arrival
        self._busy: set[Hashable] = set()  # keys with a write in flight
        self.replaced = 0  # items dropped for a newer one of the same key

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def add(self, key: Hashable, item: T) -> bool:
        """Queue ``item``; True if a worker can start it now (its entry is not busy)."""
        if key in self._waiting:
            self.replaced += 1
        self._waiting[key] = item  # an existing key keeps its place
        return key not in self._busy

    def take(self) -> tuple[Hashable, T] | None:
        """The oldest waiting write whose entry is not busy (now busy), or None."""
        busy = self._busy
        for key in self._waiting:
            if key not in busy:
                busy.add(key)
                return key, self._waiting.pop(key)
        return None

    def done(self, key: Hashable) -> T | None:
        """The write of ``key`` finished: its next value, if one came meanwhile (the
        entry stays busy: the same worker writes it, so no other can overtake it)."""
        item = self._waiting.pop(key, None)
        if item is None:
            self._busy.discard(key)
        return item
