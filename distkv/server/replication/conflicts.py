"""Conflict records: what the replica resolved, written into the error tree.

The replica (pure) logs every conflict it resolved (``Replica.conflict_log``); this
part writes them, bounded, under ``.distkv conflict <node> <slot>``: a ring of
``server.conflict_records`` entries per node (default 100), so a flapping writer
cannot fill the tree. Records wait while the node is not ready: a node that has not
learned its tick yet must not write.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ...core.path import Path

if TYPE_CHECKING:
    from ...core.replica import Replica
    from ..server import Server

__all__ = ["CONFLICT", "ConflictRecorder"]

CONFLICT = (".distkv", "conflict")


class ConflictRecorder:
    """Collects the replica's conflicts and writes them through ``Server.write``."""

    def __init__(self, server: Server, replica: Replica, *, slots: int):
        self.server = server
        self.replica = replica
        self.slots = max(1, slots)
        self._pending: list[dict] = []

    def collect(self) -> None:
        """End of a batch: take the replica's new conflicts (keeping at most one
        ring's worth) and write them if the node is ready."""
        r = self.replica
        if r.conflict_log:
            self._pending.extend(r.drain_conflicts())
            del self._pending[: -self.slots]
        if self._pending and r.ready:
            self.flush()

    def flush(self) -> None:
        """Write the pending records (the caller knows the node is ready)."""
        recs, self._pending = self._pending, []
        r = self.replica
        k = self.slots
        first = r.conflicts - len(recs)
        base = (*CONFLICT, self.server.name)
        for i, rec in enumerate(recs):
            n = first + i
            p = rec["path"]
            value = {
                "path": p if isinstance(p, Path) else Path.build(p),
                "winner": list(rec["winner"]),
                "loser": list(rec["loser"]),
                "n": n,
                "time": time.time(),
            }
            self.server.write(Path.build((*base, n % k)), value)
