"""The replica state machine: one node's view of the shared tree.

Inputs are local writes, messages from peers and the time (``now_ms`` arguments); the
trio shell (``distkv.server``) moves messages between it and the world. Nothing here
touches sockets, files or the clock, so SimNet (:mod:`distkv.testing.simnet`) can drive
whole clusters with a simulated clock, lossy links and partitions.

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

Every message is a msgpack-able dict with a ``"type"``. Chains are lists of
``[node, tick]`` links, head first (tuples on the sending side; msgpack makes them
arrays). Tick ranges are lists of half-open ``[start, end]`` pairs
(:class:`~distkv.core.ticks.TickSet` wire form). ``"to"``: if present, the message is
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

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from . import tree as trees
from .clock import next_tock
from .path import Path
from .ticks import TickSet
from .types import NotGiven

UPDATE = "update"
PRESENCE = "presence"
REPAIR = "repair"
ENTRY = "entry"
SUPERSEDED = "superseded"
SYNC = "sync"
SYNC_END = "sync_end"

#: Change code returned for an entry dropped while merging a resync dump.
DROPPED = -1

Change = tuple[tuple, trees.Entry, int]
_NO_CHANGES: list = []


def _chain(c: Iterable) -> tuple:
    """A chain from the wire (lists) as the tuple of tuples that Entry.merge compares."""
    return tuple((n, t) for n, t in c)


class Peer:
    """What presence told us about another node."""

    __slots__ = ("name", "seen", "horizon", "tick", "last_ms", "online", "ready", "syncing")

    def __init__(self, name: str):
        self.name = name
        self.seen: dict[str, TickSet] = {}
        self.horizon: dict[str, int] = {}
        self.tick = 0
        self.last_ms = 0
        self.online = False
        self.ready = False
        self.syncing = False

    def prefix(self, origin: str) -> int:
        s = self.seen.get(origin)
        return s.prefix if s is not None else 0


class Replica:
    """One node's tree, write counters and replication bookkeeping.

    ``tick`` numbers this node's own changes 1, 2, 3, ... without gaps and is never
    reused; ``tock`` is the hybrid logical clock of the last event seen or made.
    ``seen[origin]`` holds the ticks of ``origin`` whose effect is in our tree.
    """

    def __init__(
        self,
        name: str,
        tree: trees.Tree | None = None,
        *,
        heartbeat_ms: int = 1000,
        repair_delay_ms: int = 300,
        repair_backoff_ms: int = 1000,
        repair_max_backoff_ms: int = 30_000,
        max_repair_ticks: int = 2000,
        dead_after_ms: int = 10_000,
        forget_after_ms: int = 3_600_000,
        purge_interval_ms: int = 60_000,
        ring_size: int = 4096,
        max_conflict_records: int = 1000,
    ):
        self.name = name
        self.tree = tree if tree is not None else trees.Tree()
        self.tick = 0
        self.tock = 0
        self.conflicts = 0
        self.heartbeat_ms = heartbeat_ms
        self.repair_delay_ms = repair_delay_ms
        self.repair_backoff_ms = repair_backoff_ms
        self.repair_max_backoff_ms = repair_max_backoff_ms
        self.max_repair_ticks = max_repair_ticks
        self.dead_after_ms = dead_after_ms
        self.forget_after_ms = forget_after_ms
        self.purge_interval_ms = purge_interval_ms
        self.max_conflict_records = max_conflict_records

        #: messages to send; see the module docstring. Drained by the shell.
        self.outbox: list[dict] = []
        #: conflict records for the ``.distkv`` error tree; drained by the shell.
        self.conflict_log: list[dict] = []
        self.seen: dict[str, TickSet] = {name: TickSet()}
        self._own_seen = self.seen[name]
        #: highest tick announced per origin (presence), beyond what we have seen
        self.known: dict[str, int] = {}
        #: purge horizon: per origin, ticks up to here may have been purged
        self.horizon: dict[str, int] = {}
        self.peers: dict[str, Peer] = {}
        self.needs_sync = False
        self.syncing = False

        self._own_paths: deque = deque(maxlen=ring_size)
        self._own_last = 0  # tick of the last path in _own_paths
        self._recent: deque = deque(maxlen=ring_size)
        self._tombstones: dict[tuple, None] = {}
        self._repair: dict[str, list[int]] = {}  # origin -> [next_ms, attempts, missing]
        self._next_presence = 0
        self._next_purge = purge_interval_ms
        self._last_periodic: int | None = None
        self._purge_epoch: tuple | None = None
        self._sync_buf: list[dict] = []
        self._sync_hdr: dict | None = None
        self._sync_paths: set | None = None

        if tree is not None:
            self.rebuild_bookkeeping()

    # --- local changes (the hot path) -------------------------------------------------

    def local_write(self, path: tuple, value: Any, now_ms: int) -> trees.Entry:
        """Write (or, with ``value=NotGiven``, delete) ``path`` as this node.

        Changes the entry and queues the ``update`` message; nothing else is allocated.
        """
        name = self.name
        self.tick = tick = self.tick + 1
        self.tock = t = next_tock(self.tock, now_ms)
        e = self.tree.ensure(path)
        old = 0
        if e.node == name:
            old = e.tick
        elif e.prev:
            for lk in e.prev:
                if lk[0] == name:
                    old = lk[1]
                    break
        e.write(value, name, tick, t)
        if value is NotGiven:
            msg = {"type": UPDATE, "path": path, "chain": e.chain, "tock": t,
                   "node": name, "tick": tick}  # fmt: skip
            self._tombstones[path] = None
        else:
            msg = {"type": UPDATE, "path": path, "value": value, "chain": e.chain,
                   "tock": t, "node": name, "tick": tick}  # fmt: skip
        if old:
            msg["prev"] = old
        self._own_seen.add(tick)
        if tick != self._own_last + 1:
            self._own_paths.clear()
        self._own_paths.append(path)
        self._own_last = tick
        self.outbox.append(msg)
        return e

    def local_delete(self, path: tuple, now_ms: int) -> trees.Entry | None:
        """Delete ``path`` (leaves a tombstone); None if there was no value."""
        e = self.tree.lookup(path)
        if e is None or e.value is NotGiven:
            return None
        return self.local_write(path, NotGiven, now_ms)

    def drain(self) -> list[dict]:
        """Take the queued outgoing messages."""
        out = self.outbox
        self.outbox = []
        return out

    def drain_conflicts(self) -> list[dict]:
        """Take the conflict records: ``{"path", "winner": [node, tick, tock], "loser"}``."""
        out = self.conflict_log
        self.conflict_log = []
        return out

    # --- merging ----------------------------------------------------------------------

    def observe_tock(self, tock: int) -> None:
        if tock > self.tock:
            self.tock = tock

    def _seen_of(self, origin: str) -> TickSet:
        s = self.seen.get(origin)
        if s is None:
            s = self.seen[origin] = TickSet()
        return s

    def _mark(self, node: str, tick: int) -> None:
        s = self.seen.get(node)
        if s is None:
            s = self.seen[node] = TickSet()
        s.add(tick)
        if node == self.name and tick > self.tick:
            # we lost state: never reuse a tick that the network has seen
            self.tick = tick

    def _all_seen(self, chain: tuple) -> bool:
        seen = self.seen
        for n, t in chain:
            s = seen.get(n)
            if s is None or t not in s:
                return False
        return True

    def apply_remote(self, path: tuple, value: Any, chain: Iterable, tock: int) -> tuple:
        """Merge a replicated write. Returns ``(entry, merge_code)``.

        Also records the chain's links as seen, counts and logs conflicts, and notes
        tombstones for purging; so replaying a log through here restores bookkeeping.
        """
        chain = _chain(chain)
        if tock > self.tock:
            self.tock = tock
        e = self.tree.ensure(path)
        on, ot, ok = e.node, e.tick, e.tock
        code = e.merge(value, chain, tock)
        for n, t in chain:
            self._mark(n, t)
        if code >= trees.MERGE_CONFLICT_TAKEN:
            self.conflicts += 1
            mine = [on, ot, ok]
            theirs = [chain[0][0], chain[0][1], tock]
            if code == trees.MERGE_CONFLICT_TAKEN:
                rec = {"path": path, "winner": theirs, "loser": mine}
            else:
                rec = {"path": path, "winner": mine, "loser": theirs}
            if len(self.conflict_log) < self.max_conflict_records:
                self.conflict_log.append(rec)
        if e.value is NotGiven and e.node is not None:
            self._tombstones[path] = None
        return e, code

    # --- messages from peers ------------------------------------------------------------

    def receive(self, msg: dict, now_ms: int) -> list[Change]:
        """Handle one message from a peer; returns the tree changes it caused."""
        to = msg.get("to")
        if to is not None and to != self.name:
            return _NO_CHANGES
        typ = msg.get("type")
        if typ == UPDATE:
            return self._on_update(msg)
        if typ == PRESENCE:
            self._on_presence(msg, now_ms)
        elif typ == ENTRY:
            if self.syncing:
                self._sync_buf.append(msg)
                return _NO_CHANGES
            return self._on_entry(msg)
        elif typ == REPAIR:
            self._on_repair(msg)
        elif typ == SUPERSEDED:
            self._on_superseded(msg)
        return _NO_CHANGES

    def _on_update(self, msg: dict) -> list[Change]:
        if self.syncing:
            self._sync_buf.append(msg)
            return _NO_CHANGES
        node = msg["node"]
        tick = msg["tick"]
        s = self.seen.get(node)
        if s is not None and tick in s:
            # a duplicate, or covered by something newer: re-applying could only
            # resurrect a purged tombstone's victim
            self.observe_tock(msg["tock"])
            return _NO_CHANGES
        path = msg["path"]
        e, code = self.apply_remote(path, msg.get("value", NotGiven), msg["chain"], msg["tock"])
        prev = msg.get("prev")
        if prev:
            self._mark(node, prev)
        self._recent.append((node, tick, path))
        return [(path, e, code)]

    def _on_entry(self, msg: dict) -> list[Change]:
        chain = _chain(msg["chain"])
        if not chain:
            return _NO_CHANGES
        if self._all_seen(chain):
            # nothing new for us (and maybe something we purged)
            self.observe_tock(msg["tock"])
            return _NO_CHANGES
        path = msg["path"]
        e, code = self.apply_remote(path, msg.get("value", NotGiven), chain, msg["tock"])
        return [(path, e, code)]

    def _on_presence(self, msg: dict, now_ms: int) -> None:
        name = msg["node"]
        if name == self.name:
            return
        p = self.peers.get(name)
        if p is None:
            p = self.peers[name] = Peer(name)
        if not msg.get("online", True):
            p.online = False
            p.ready = False
            return
        p.online = True
        p.last_ms = now_ms
        p.ready = bool(msg.get("ready", True))
        p.syncing = bool(msg.get("syncing", False))
        p.tick = msg.get("tick", 0)
        if "tock" in msg:
            self.observe_tock(msg["tock"])
        known = self.known
        if p.tick > known.get(name, 0):
            known[name] = p.tick
            self._seen_of(name)
        seen = msg.get("seen")
        if seen is not None:
            p.seen = {o: TickSet.from_list(r) for o, r in seen.items()}
            for o, ts in p.seen.items():
                m = ts.max
                if m > known.get(o, 0):
                    known[o] = m
                    self._seen_of(o)
        if known.get(self.name, 0) > self.tick:
            self.tick = known[self.name]
        hz = msg.get("horizon")
        if hz:
            p.horizon = dict(hz)
            self._adopt_horizon(hz)

    def _adopt_horizon(self, hz: dict) -> None:
        changed = False
        for o, h in hz.items():
            if h > self.horizon.get(o, 0):
                self.horizon[o] = h
                changed = True
        if changed:
            self._check_stale()

    def _check_stale(self) -> None:
        """Below the horizon for some origin? Then we may have missed a purge."""
        for o, h in self.horizon.items():
            if self._seen_of(o).prefix < h:
                self.needs_sync = True
                return

    def _on_superseded(self, msg: dict) -> None:
        origin = msg["origin"]
        h = msg.get("horizon", 0)
        if h > self._seen_of(origin).prefix:
            # the answer may hide a purged delete: resync instead of trusting it
            self._adopt_horizon({origin: h})
            return
        self._adopt_horizon({origin: h})
        s = self._seen_of(origin)
        for a, b in msg["ranges"]:
            s.add_range(a, b)
        if origin == self.name and s.max > self.tick:
            self.tick = s.max

    # --- answering repair requests ----------------------------------------------------

    def _on_repair(self, msg: dict) -> None:
        hz = msg.get("horizon")
        if hz:
            self._adopt_horizon(hz)  # a requester that purged more than we know of
        if self.needs_sync or self.syncing:
            return  # our data may be older than the horizon: don't spread it
        origin = msg["origin"]
        dest = msg["node"]
        have = self.seen.get(origin)
        if have is None:
            return
        want = TickSet.from_list(msg["ranges"]) & have
        if not want:
            return
        todo = set(want)
        paths: dict[int, tuple] = {}
        if origin == self.name and self._own_paths:
            first = self._own_last - len(self._own_paths) + 1
            ring = self._own_paths
            for t in todo:
                if first <= t <= self._own_last:
                    paths[t] = ring[t - first]
        if len(paths) < len(todo):
            for n, t, p in self._recent:
                if n == origin and t in todo:
                    paths[t] = p
        present: set[int] = set()
        send: dict[tuple, trees.Entry] = {}
        for t, p in paths.items():
            e = self.tree.lookup(p)
            if e is not None and _has_link(e, origin, t):
                present.add(t)
                send[p] = e
        rest = todo.difference(paths)
        if rest:
            for rel, e in self.tree.walk(sort=False):
                if e.node is None:
                    continue
                if e.node == origin:
                    t = e.tick
                else:
                    for lk in e.prev:
                        if lk[0] == origin:
                            t = lk[1]
                            break
                    else:
                        continue
                if t in rest:
                    present.add(t)
                    send[Path._from_tuple(rel)] = e
        out = self.outbox
        for p, e in send.items():
            out.append(_entry_msg(p, e, dest))
        gone = want - TickSet((t, t + 1) for t in present)
        if gone:
            out.append(
                {
                    "type": SUPERSEDED,
                    "to": dest,
                    "node": self.name,
                    "origin": origin,
                    "ranges": gone.to_list(),
                    "horizon": self.horizon.get(origin, 0),
                }
            )

    # --- periodic work ---------------------------------------------------------------------

    @property
    def tombstone_count(self) -> int:
        """Deletions still remembered (until every live peer has seen them)."""
        return len(self._tombstones)

    @property
    def ready(self) -> bool:
        """False while our data may be stale (needs a sync) or a sync is running."""
        return not (self.needs_sync or self.syncing)

    def presence(self) -> dict:
        """The presence/heartbeat message (see module docstring)."""
        return {
            "type": PRESENCE,
            "node": self.name,
            "online": True,
            "ready": self.ready,
            "syncing": self.syncing,
            "tick": self.tick,
            "tock": self.tock,
            "seen": {o: s.to_list() for o, s in self.seen.items() if s},
            "horizon": dict(self.horizon),
        }

    def is_live(self, peer: Peer, now_ms: int) -> bool:
        return peer.online and now_ms - peer.last_ms <= self.dead_after_ms

    def members(self, now_ms: int) -> list[Peer]:
        """Peers that tombstone purges wait for: heard from within ``forget_after_ms``.

        Deliberately much longer than ``dead_after_ms``: a node that is merely down or
        cut off for a while must not be left out of a purge (see the module docstring).
        """
        return [p for p in self.peers.values() if now_ms - p.last_ms <= self.forget_after_ms]

    def live_peers(self, now_ms: int) -> list[Peer]:
        return [p for p in self.peers.values() if self.is_live(p, now_ms)]

    def periodic(self, now_ms: int) -> list[tuple]:
        """Periodic work: heartbeat, repair requests, purging. Call every ~100 ms.

        Returns the paths of the tombstones purged now (the shell persists that).
        """
        last, self._last_periodic = self._last_periodic, now_ms
        if last is not None and now_ms - last > self.dead_after_ms:
            # we were asleep (suspended, stopped): our view of the peers is stale, so
            # no purge decisions until fresh presence has had time to arrive
            self._purge_epoch = None
            self._next_purge = max(self._next_purge, now_ms + 3 * self.heartbeat_ms)
        if now_ms >= self._next_presence:
            self.outbox.append(self.presence())
            self._next_presence = now_ms + self.heartbeat_ms
        if self.needs_sync or self.syncing:
            return []
        self._repair_tick(now_ms)
        if now_ms >= self._next_purge:
            self._next_purge = now_ms + self.purge_interval_ms
            return self._purge_tick(now_ms)
        return []

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """Missing ticks per origin: ``{origin: [(start, end), ...]}`` (half-open)."""
        out = {}
        known = self.known
        for o, s in self.seen.items():
            hi = known.get(o, 0)
            if s.max > hi:
                hi = s.max
            if s.prefix >= hi:
                continue
            out[o] = s.missing(hi)
        return out

    def _repair_tick(self, now_ms: int) -> None:
        gaps = self.gaps()
        st_all = self._repair
        for o in [o for o in st_all if o not in gaps]:
            del st_all[o]
        for o, g in gaps.items():
            count = sum(b - a for a, b in g)
            st = st_all.get(o)
            if st is None:
                st_all[o] = [now_ms + self.repair_delay_ms, 0, count]
                continue
            if count < st[2]:
                st[1] = 0  # progress: reset the backoff
            st[2] = count
            if now_ms < st[0]:
                continue
            peer = self._repair_peer(o, g[0][0], st[1], now_ms)
            if peer is None:
                st[0] = now_ms + self.repair_delay_ms
                continue
            ranges = []
            budget = self.max_repair_ticks
            for a, b in g:
                if b - a > budget:
                    b = a + budget
                ranges.append([a, b])
                budget -= b - a
                if budget <= 0:
                    break
            self.outbox.append(
                {
                    "type": REPAIR,
                    "to": peer,
                    "node": self.name,
                    "origin": o,
                    "ranges": ranges,
                    "horizon": dict(self.horizon),
                }  # fmt: skip
            )
            st[1] += 1
            st[0] = now_ms + min(
                self.repair_backoff_ms << min(st[1] - 1, 20), self.repair_max_backoff_ms
            )

    def _repair_peer(self, origin: str, first: int, attempt: int, now_ms: int) -> str | None:
        """Whom to ask: the origin if live, else live peers that have seen ``first``."""
        cands = []
        for p in sorted(self.live_peers(now_ms), key=lambda p: p.name):
            if not p.ready:
                continue
            if p.name == origin:
                cands.insert(0, p.name)  # the origin has all of its own ticks
                continue
            s = p.seen.get(origin)
            if s is not None and first in s:
                cands.append(p.name)
        if not cands:
            return None
        return cands[attempt % len(cands)]

    # --- purging tombstones ----------------------------------------------------------------

    def _min_prefix(self, live: list[Peer]) -> dict[str, int]:
        out = {}
        for o, s in self.seen.items():
            m = s.prefix
            for p in live:
                pp = p.prefix(o)
                if pp < m:
                    m = pp
            out[o] = m
        return out

    def _purge_tick(self, now_ms: int) -> list[tuple]:
        """Two-phase tombstone purge; see the module docstring. Returns purged paths."""
        purged: list[tuple] = []
        live = self.members(now_ms)
        names = {p.name for p in live}
        names.add(self.name)
        mp = self._min_prefix(live)
        ep = self._purge_epoch
        if ep is not None:
            ticks, cands = ep
            if not names <= ticks.keys():
                self._purge_epoch = None  # someone (re)appeared: start over
            elif all(mp.get(o, 0) >= t for o, t in ticks.items()) and all(
                mp.get(o, 0) >= s.max for o, s in self.seen.items() if o not in names
            ):
                # (the second test: writes of nodes that are not live, which could be
                # concurrent with the delete, must have reached everybody first)
                for path, node, tick in cands:
                    e = self.tree.lookup(path)
                    if e is not None and e.is_tombstone and e.node == node and e.tick == tick:
                        self._drop(path, e)
                        purged.append(path)
                # every link of a purged chain is <= the current minimum prefix
                self._adopt_horizon(mp)
                self._purge_epoch = None
            else:
                return purged
        cands = []
        tombs = self._tombstones
        for path in list(tombs):
            e = self.tree.lookup(path)
            if e is None or not e.is_tombstone:
                del tombs[path]
                continue
            if e.tick <= mp.get(e.node, 0):
                cands.append((path, e.node, e.tick))
        if cands:
            ticks = {p.name: p.tick for p in live}
            ticks[self.name] = self.tick
            self._purge_epoch = (ticks, cands)
        return purged

    def _drop(self, path: tuple, e: trees.Entry) -> None:
        """Forget an entry's write (it stays as an intermediate if it has children)."""
        e.value = NotGiven
        e.node = None
        e.tick = 0
        e.tock = 0
        e.prev = trees.EMPTY
        self._tombstones.pop(path, None)
        self.tree.prune(path)

    # --- full sync -------------------------------------------------------------------------

    def request_sync(self) -> None:
        """Mark this node as needing a full sync (e.g. it starts without data)."""
        self.needs_sync = True

    def sync_source(self, now_ms: int) -> str | None:
        """The best peer to sync from: live, ready, not behind our horizon."""
        deficit = [(o, h) for o, h in self.horizon.items() if self._seen_of(o).prefix < h]
        live = [p for p in self.live_peers(now_ms) if not p.syncing]

        def covers(p: Peer) -> bool:
            return all(p.prefix(o) >= h for o, h in deficit)

        def size(p: Peer) -> tuple:
            return (-sum(s.prefix for s in p.seen.values()), p.name)

        for group in (
            [p for p in live if p.ready and covers(p)],
            [p for p in live if covers(p)],
            [p for p in live if p.ready],
        ):
            if group:
                return min(group, key=size).name
        return None

    def dump(self) -> Iterator[dict]:
        """The full-sync stream: header, every entry with a chain, end marker.

        The header's bookkeeping is taken first; entries are read lazily, and as
        merging only moves entries forward, the stream never claims more than it has.
        """
        yield {
            "type": SYNC,
            "node": self.name,
            "tick": self.tick,
            "tock": self.tock,
            "seen": {o: s.to_list() for o, s in self.seen.items() if s},
            "horizon": dict(self.horizon),
        }
        for rel, e in self.tree.walk(sort=False):
            if e.node is not None:
                yield _entry_msg(Path._from_tuple(rel), e, None)
        yield {"type": SYNC_END, "node": self.name}

    def sync_begin(self) -> None:
        """Start receiving a dump; bus updates are buffered until it ends."""
        self.syncing = True
        self._sync_buf = []
        self._sync_hdr = None
        has_data = any(e.node is not None for _, e in self.tree.walk(sort=False))
        self._sync_paths = set() if has_data else None

    def sync_feed(self, msg: dict, now_ms: int) -> list[Change]:
        """Feed one message of a peer's :meth:`dump`; returns the tree changes."""
        typ = msg["type"]
        if typ == ENTRY:
            if self._sync_paths is not None:
                self._sync_paths.add(tuple(msg["path"]))
            return self._on_entry(msg)
        if typ == SYNC:
            self._sync_hdr = msg
            return _NO_CHANGES
        if typ == SYNC_END:
            return self._sync_end(now_ms)
        raise ValueError(f"unexpected message in a dump: {typ!r}")

    def _sync_end(self, now_ms: int) -> list[Change]:
        hdr = self._sync_hdr or {}
        peer_seen = {o: TickSet.from_list(r) for o, r in hdr.get("seen", {}).items()}
        changes: list[Change] = []
        if self._sync_paths is not None:
            # keep only what is newer than the peer's data: an entry the peer has seen
            # but did not send was deleted and purged there
            drop = []
            for rel, e in self.tree.walk(sort=False):
                if e.node is None or rel in self._sync_paths:
                    continue
                ps = peer_seen.get(e.node)
                if ps is not None and e.tick in ps:
                    drop.append((rel, e))
            for rel, e in drop:
                p = Path._from_tuple(rel)
                self._drop(p, e)
                changes.append((p, e, DROPPED))
        for o, ps in peer_seen.items():
            self._seen_of(o).update(ps)
            if ps.max > self.known.get(o, 0):
                self.known[o] = ps.max
        own = self._own_seen.max
        if own > self.tick:
            self.tick = own
        self.observe_tock(hdr.get("tock", 0))
        self.syncing = False
        self.needs_sync = False
        self._sync_paths = None
        self._sync_hdr = None
        self._adopt_horizon(hdr.get("horizon", {}))
        self._check_stale()
        changes.extend(self._replay())
        return changes

    def sync_abort(self) -> list[Change]:
        """The dump failed: apply what was buffered; ``needs_sync`` stays as it was."""
        self.syncing = False
        self._sync_paths = None
        self._sync_hdr = None
        return self._replay()

    def _replay(self) -> list[Change]:
        buf, self._sync_buf = self._sync_buf, []
        out: list[Change] = []
        for m in buf:
            out.extend(self.receive(m, 0))
        return out

    # --- persistence -------------------------------------------------------------------------

    def bookkeeping(self) -> dict:
        """Counters and per-origin bookkeeping for a snapshot (msgpack-able)."""
        return {
            "node": self.name,
            "tick": self.tick,
            "tock": self.tock,
            "seen": {o: s.to_list() for o, s in self.seen.items() if s},
            "known": dict(self.known),
            "horizon": dict(self.horizon),
            "conflicts": self.conflicts,
        }

    def load_bookkeeping(self, data: dict) -> None:
        """Merge a :meth:`bookkeeping` snapshot (union/maximum: loading twice is harmless)."""
        for o, r in data.get("seen", {}).items():
            self._seen_of(o).update(TickSet.from_list(r))
        for o, k in data.get("known", {}).items():
            if k > self.known.get(o, 0):
                self.known[o] = k
        for o, h in data.get("horizon", {}).items():
            if h > self.horizon.get(o, 0):
                self.horizon[o] = h
        self.tick = max(self.tick, data.get("tick", 0), self._own_seen.max)
        self.observe_tock(data.get("tock", 0))
        self.conflicts = max(self.conflicts, data.get("conflicts", 0))

    def rebuild_bookkeeping(self) -> None:
        """Mark every chain link in the tree as seen (after loading a tree from storage).

        Superseded ticks are not in any chain; they show up as gaps that repair
        answers with "superseded" (cheap), unless a :meth:`bookkeeping` snapshot was
        loaded as well. Our own ticks ``1..tick`` count as seen: call this after the
        tick counter has been restored too.
        """
        if self.tick:
            self._own_seen.add_range(1, self.tick + 1)
        # One pass without building a path per entry (only tombstones need theirs);
        # ticks are collected per node and added as sorted runs. Start-up time with a
        # big state directory depends on this.
        ticks: dict[str, list[int]] = {}
        max_tock = 0
        # (parent's path, own key, entry); the root has no key
        stack: list[tuple[tuple, Any, trees.Entry]] = [((), _ROOT, self.tree.root)]
        while stack:
            parent, key, e = stack.pop()
            node = e.node
            if node is not None:
                lst = ticks.get(node)
                if lst is None:
                    lst = ticks[node] = []
                lst.append(e.tick)
                for n, t in e.prev:
                    ticks.setdefault(n, []).append(t)
                if e.tock > max_tock:
                    max_tock = e.tock
                if e.value is NotGiven:
                    rel = parent if key is _ROOT else (*parent, key)
                    self._tombstones[Path._from_tuple(rel)] = None
            if e.children:
                rel = parent if key is _ROOT else (*parent, key)
                for k, c in e.children.items():
                    stack.append((rel, k, c))
        self.observe_tock(max_tock)
        for node, lst in ticks.items():
            lst.sort()
            start = prev = lst[0]
            for t in lst[1:]:
                if t != prev + 1 and t != prev:
                    self._mark_range(node, start, prev + 1)
                    start = t
                prev = t
            self._mark_range(node, start, prev + 1)

    def _mark_range(self, node: str, start: int, end: int) -> None:
        """:meth:`_mark` for the ticks ``start .. end-1``."""
        s = self.seen.get(node)
        if s is None:
            s = self.seen[node] = TickSet()
        s.add_range(start, end)
        if node == self.name and end - 1 > self.tick:
            self.tick = end - 1


_ROOT = object()  # the root entry's "key" in rebuild_bookkeeping's walk


def _has_link(e: trees.Entry, node: str, tick: int) -> bool:
    if e.node == node:
        return e.tick == tick
    for lk in e.prev:
        if lk[0] == node:
            return lk[1] == tick
    return False


def _entry_msg(path: tuple, e: trees.Entry, to: str | None) -> dict:
    m = {"type": ENTRY, "path": path, "chain": e.chain, "tock": e.tock}
    if e.value is not NotGiven:
        m["value"] = e.value
    if to is not None:
        m["to"] = to
    return m
