"""The replica state machine: one node's view of the shared tree.

Inputs are local writes, messages from peers and the time (``now_ms`` arguments); the
trio shell (``distkv.server``) moves messages between it and the world. Nothing here
touches sockets, files or the clock, so SimNet (:mod:`distkv.testing.simnet`) can drive
whole clusters with a simulated clock, lossy links and partitions.

The package, one job per module:

========================  ==========================================================
:mod:`.replica`           :class:`Replica`: the tree, counters, merging; coordinates
:mod:`.messages`          typed messages; ``encode``/``decode``: the only wire format
:mod:`.links`             a node's link in an entry; an entry as a message
:mod:`.peers`             :class:`Peer`, liveness, membership, whom to ask
:mod:`.repair`            repair requests with backoff; rings of recent writes
:mod:`.purge`             the two-phase tombstone purge
:mod:`.sync`              what is kept while a dump streams in
========================  ==========================================================

Driving a replica (what the shell does)
---------------------------------------

* Client write / delete: :meth:`Replica.local_write` / :meth:`Replica.local_delete`.
  The entry is changed at once and an ``update`` message is appended to
  :attr:`Replica.outbox`.
* Message from the bus: :meth:`Replica.receive` ``(msg, now_ms)``; it returns the tree
  changes as ``[(path, entry, merge_code), ...]`` for watchers and the log.
* Periodically (say every 100 ms): :meth:`Replica.periodic` ``(now_ms)``: presence
  heartbeat, repair requests (rate-limited, with backoff), tombstone purging.
* After each of these calls: :meth:`Replica.drain` and send every message; one with a
  ``"to"`` key is for that node only, the others are broadcast. The presence message
  should be published retained, and the shell's last will is
  ``{"type": "presence", "node": NAME, "online": False}``.
* Conflicts: :attr:`Replica.conflicts` counts them; :meth:`Replica.drain_conflicts`
  returns the records to write under the ``.distkv`` error tree.
* Joining / resync: when :attr:`Replica.needs_sync` is true (set by
  :meth:`Replica.request_sync` for a node without data, or automatically when the node
  learns that it missed a tombstone purge), pick :meth:`Replica.sync_source`, call
  :meth:`Replica.sync_begin`, stream the peer's :meth:`Replica.dump` (over the client
  protocol) into :meth:`Replica.sync_feed`; on failure :meth:`Replica.sync_abort`.
  Bus updates received meanwhile are buffered and applied at the end.
* Persistence: :meth:`Replica.bookkeeping` / :meth:`Replica.load_bookkeeping` for
  snapshots; replaying logged changes through :meth:`Replica.apply_remote` restores
  the per-origin bookkeeping as well (including this node's own tick). After loading a
  tree straight into :attr:`Replica.tree`, call :meth:`Replica.rebuild_bookkeeping`.
* Memory: :attr:`Replica.outbox` grows with every local write until drained, and
  tombstones are only purged by :meth:`Replica.periodic`: a single node with no bus
  must still drain and tick.

Message formats
---------------

Inside, messages are typed (:mod:`.messages`); at the boundary (:meth:`Replica.receive`,
:meth:`Replica.sync_feed`, :meth:`Replica.drain`, :meth:`Replica.dump`) every message is
a msgpack-able dict with a ``"type"``. Chains are lists of ``[node, tick]`` links,
head first (lists on both sides: the codec would pack tuples through a Python
callback, one call per tuple). Tick ranges are lists of half-open ``[start, end]``
pairs (:class:`~distkv.core.ticks.TickSet` wire form). ``"to"``: if present, the message is
for that node only; a replica ignores messages addressed to another node.

``update`` (broadcast by the writer)::

    {"type": "update", "path": Path, "value": any (absent = delete: tombstone),
     "chain": [[node, tick], ...], "tock": int, "node": origin, "tick": origin's tick,
     "prev": int (optional: the origin's previous tick at this path, now superseded)}

    ``node``/``tick`` equal ``chain[0]``. ``prev`` lets receivers mark that tick as
    seen without a repair round trip when it was lost.

``presence`` (heartbeat, every ``heartbeat_ms``; retained)::

    {"type": "presence", "node": name, "online": true, "ready": bool,
     "syncing": bool, "tick": int, "tock": int,
     "seen": {origin: ranges}, "horizon": {origin: tick}}

    ``seen``: every tick of each origin this node has seen (present in a chain or
    known to be superseded). ``horizon``: the purge horizon (see below). The shell may
    add keys (client address, ...). Last will: ``{"type": "presence", "node": name,
    "online": false}``.

``repair`` (request, to one peer)::

    {"type": "repair", "to": peer, "node": requester, "origin": origin,
     "ranges": ranges, "horizon": {origin: tick}}

    ``horizon`` is the requester's purge horizon: a responder that is below it does
    not answer (its data may be older than a purge) and resyncs.

``entry`` (answer to ``repair``, to the requester; also the body of a ``dump``)::

    {"type": "entry", "path": Path, "value": any (absent = tombstone),
     "chain": [[node, tick], ...], "tock": int, "to": requester (not in dumps)}

    The entry's *current* state (value, merged chain): it contains a requested tick as
    one of its chain links.

``superseded`` (answer to ``repair``, to the requester)::

    {"type": "superseded", "to": requester, "node": responder, "origin": origin,
     "ranges": ranges, "horizon": int}

    Ticks the responder has seen that are in no chain any more. ``horizon`` is the
    responder's purge horizon for ``origin``: a requester whose own seen prefix for
    that origin is below it may have missed a purge, so it resyncs instead.

Full sync (:meth:`Replica.dump`, streamed over the client protocol)::

    {"type": "sync", "node": source, "tick": int, "tock": int,
     "seen": {origin: ranges}, "horizon": {origin: tick}}
    {"type": "entry", ...}   # one per entry with a chain, tombstones included
    {"type": "sync_end", "node": source}

Repair and its cost
-------------------

A gap (ticks missing below the highest tick known for an origin, from chains or from
presence) is requested after ``repair_delay_ms`` (reordered messages arrive meanwhile)
from the origin itself if it is live, else from a live peer that has seen them, with
exponential backoff per origin and at most ``max_repair_ticks`` per request.

To answer, the responder must find the entry whose chain holds a tick. A full index
origin -> tick -> path costs ~200 bytes per chain link (dict slot, int, the path tuple
kept alive), i.e. tens of MB for 100k entries on a Raspberry Pi, and is rarely used. So
we keep two bounded rings instead: the paths of this node's own last ``ring_size``
writes (indexed by tick: O(1); the origin is asked first) and the last ``ring_size``
received updates. Ticks not found there are looked up by one scan of the tree per
request (about 20 ms per 100k entries on a PC; see ``tests/core/test_replica.py``).
A ring hit is exact: a (node, tick) write happened at exactly one path, and once it
leaves that entry's chain it never comes back, so "not in that entry's chain any more"
means superseded.

Deletion, purging and the horizon
---------------------------------

A delete leaves a tombstone (an entry with a chain and no value). Purging is decided
from presence data about the *members*: peers heard from within ``forget_after_ms``
(default 1 h; much longer than ``dead_after_ms``, which only steers repair). A tombstone
``(X, t)`` is purged in two phases: (1) every member has seen everything of ``X`` up to
``t`` (minimum seen prefix); we note each member's current tick, which bounds the
writes that could be concurrent with the delete. (2) At a later purge tick every member
has seen all of those ticks (and everything we know of non-members), and the member set
has not grown; then the tombstone goes. The purge horizon (per origin: the minimum seen
prefix at purge time, so every link of a purged chain lies below it) is remembered,
announced in presence and repair requests, and only rises. After a long pause of
:meth:`Replica.periodic` (process stopped, host suspended) a node waits for fresh
presence before purging.

A node whose seen prefix for some origin is below a horizon it learns may have missed a
purge: it stops answering repairs, sets :attr:`Replica.needs_sync`, and resyncs. While
merging the dump it keeps only what is newer than the peer's data: dump entries whose
chain links it has all seen are skipped, and its own entries whose head the peer has
seen but which are not in the dump are dropped (deleted and purged there). A stale
update (already seen) is never re-applied either, so a late duplicate cannot undo a
purged delete.

Known limit: a node *forgotten* (silent for ``forget_after_ms``) that wrote to a path
concurrently with a delete that was purged meanwhile brings that write back when it
returns; replicas that had merged the write into the tombstone before purging it and
those that had not can then disagree about that one path until it is written again.
Causally later deletes are safe: deleted data is never resurrected. SimNet shows about
0.3 % of adversarial runs hitting this when ``forget_after_ms`` is as short as a few
heartbeats; with members never forgotten convergence is exact (property-tested).

Chains after a purge: replicas may differ in chain links at or below the horizon (one
merged a write into the tombstone before purging it, another purged first). Every
member has seen those writes, so the links carry no information any more.
"""

from .messages import (
    ENTRY,
    PRESENCE,
    REPAIR,
    SUPERSEDED,
    SYNC,
    SYNC_END,
    UPDATE,
    Entry,
    Message,
    Presence,
    Repair,
    Superseded,
    SyncEnd,
    SyncHeader,
    Update,
    decode,
    encode,
)
from .peers import Peer
from .replica import DROPPED, Change, Replica

__all__ = [
    "DROPPED",
    "ENTRY",
    "PRESENCE",
    "REPAIR",
    "SUPERSEDED",
    "SYNC",
    "SYNC_END",
    "UPDATE",
    "Change",
    "Entry",
    "Message",
    "Peer",
    "Presence",
    "Repair",
    "Replica",
    "Superseded",
    "SyncEnd",
    "SyncHeader",
    "Update",
    "decode",
    "encode",
]
