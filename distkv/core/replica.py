"""The replica state machine: one node's view of the shared tree.

Inputs are local writes, replicated updates and the time (``now_ms`` arguments); the
trio shell (``distkv.server``) moves data between it and the world. Nothing here
touches sockets, files or the clock.
"""

from __future__ import annotations

from typing import Any

from . import tree as trees
from .clock import next_tock
from .types import NotGiven


class Replica:
    """One node's tree plus its write counters.

    ``tick`` numbers this node's own changes 1, 2, 3, ... without gaps and is never
    reused; ``tock`` is the hybrid logical clock of the last event seen or made.
    """

    def __init__(self, name: str, tree: trees.Tree | None = None):
        self.name = name
        self.tree = tree if tree is not None else trees.Tree()
        self.tick = 0
        self.tock = 0
        self.conflicts = 0

    def local_write(self, path: tuple, value: Any, now_ms: int) -> trees.Entry:
        """Write (or, with ``value=NotGiven``, delete) ``path`` as this node."""
        self.tick += 1
        t = next_tock(self.tock, now_ms)
        self.tock = t
        e = self.tree.ensure(path)
        e.write(value, self.name, self.tick, t)
        return e

    def local_delete(self, path: tuple, now_ms: int) -> trees.Entry | None:
        """Delete ``path`` (leaves a tombstone); None if there was no value."""
        e = self.tree.lookup(path)
        if e is None or e.value is NotGiven:
            return None
        return self.local_write(path, NotGiven, now_ms)

    def observe_tock(self, tock: int) -> None:
        if tock > self.tock:
            self.tock = tock

    def apply_remote(self, path: tuple, value: Any, chain: tuple, tock: int) -> tuple:
        """Merge a replicated write. Returns ``(entry, merge_code)``."""
        self.observe_tock(tock)
        e = self.tree.ensure(path)
        code = e.merge(value, chain, tock)
        if code >= trees.MERGE_CONFLICT_TAKEN:
            self.conflicts += 1
        return e, code
