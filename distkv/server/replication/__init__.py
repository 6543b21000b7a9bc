"""The replication shell: moves messages between the node's Replica and the bus.

:class:`Replicator` is the trio side of :mod:`distkv.core.replica` (which is pure and
says in its docstring how it must be driven). One runs inside every
:meth:`Server.serve <distkv.server.server.Server.serve>`; ``docs/replication.md``
describes the topics, the message formats and the join / repair / purge procedures.

It is split into parts with one job each, wired by :mod:`.replicator`:

========================  ==========================================================
:mod:`.buslink`           local changes out (coalesced), bus messages in, presence
:mod:`.joiner`            initial data: full sync from a peer, or ``-i`` on a bus
:mod:`.readiness`         when data requests are answered; catch-up after a restart
:mod:`.conflicts`         conflict records under ``.distkv conflict <node> <slot>``
:mod:`.peers`             what presence told us about other nodes (addresses, liveness)
:mod:`.replicator`        the thin shell: builds the parts, runs their tasks, status
========================  ==========================================================

A bus that is down never blocks the server: publishing is non-blocking, the bus
reconnects by itself, and a node with data keeps serving reads and writes.
"""

from .replicator import Replicator, has_data

__all__ = ["Replicator", "has_data"]
