"""Resuming a watch after the client reconnected: pure bookkeeping, no I/O.

A watch that was running when its connection broke is started again, on the new
connection, with ``fetch``. What the consumer sees must be as if nothing happened:
no event lost, none repeated. A :class:`WatchResume` remembers the tock of every path
the consumer was told about; during the re-fetch it passes on only entries that are
new or changed, swallows the re-fetch's ``uptodate``, and then reports every path the
consumer knew that is gone (a deletion event, as a live deletion looks). What cannot
be recovered are intermediate values of an entry that changed more than once during
the outage: the consumer gets the latest, as a watch after ``fetch`` does.

A watch started without ``fetch`` has no baseline of what its consumer knew, so its
re-fetch is passed on in full, marked: ``{"state": "resync"}``, the current entries,
``{"state": "uptodate"}``, then live changes again.
"""

from __future__ import annotations

from typing import Any


class WatchResume:
    """Tracks one watch's consumer view; see the module docstring."""

    __slots__ = ("fetch", "known", "resyncing", "refetched", "started")

    def __init__(self, fetch: bool):
        self.fetch = fetch
        self.known: dict[tuple, Any] = {}  # path -> tock of its last value
        self.resyncing = False
        self.refetched: set[tuple] = set()
        self.started = False  # the first "uptodate" (or any live event) was passed on

    def begin(self) -> list[dict]:
        """The watch was started again with ``fetch``: what to tell the consumer now."""
        self.resyncing = True
        self.refetched = set()
        return [] if self.fetch else [{"state": "resync"}]

    def item(self, msg: dict) -> list[dict]:
        """An item from the server; returns what the consumer should get for it."""
        if not self.resyncing:
            self._track(msg)
            return [msg]
        path = msg.get("path")
        if path is None:
            if msg.get("state") != "uptodate":
                return [msg]
            self.resyncing = False
            if not self.fetch:
                return [msg]
            gone = [p for p in self.known if p not in self.refetched]
            for p in gone:
                del self.known[p]
            self.refetched = set()
            return [{"path": p} for p in gone]
        key = tuple(path)
        self.refetched.add(key)
        if not self.fetch:
            self._track(msg)
            return [msg]
        if self.known.get(key, _NONE) == msg.get("tock"):
            return []  # unchanged while we were away
        self._track(msg)
        return [msg]

    def _track(self, msg: dict) -> None:
        path = msg.get("path")
        if path is None:
            return
        if "value" in msg:
            self.known[tuple(path)] = msg.get("tock")
        else:
            self.known.pop(tuple(path), None)


_NONE = object()
