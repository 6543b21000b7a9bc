"""The :class:`Replica`: one node's tree, counters and bookkeeping; it coordinates
the small parts of this package (see the package docstring for how to drive it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .. import tree as trees
from ..clock import next_tock
from ..path import Path
from ..ticks import TickSet
from ..types import NotGiven
from .links import entry_message, link_tick
from .messages import (
    Entry,
    Message,
    Presence,
    Repair,
    Superseded,
    SyncEnd,
    SyncHeader,
    Update,
    as_chain,
    decode,
    encode,
)
from .peers import Membership, Peer
from .purge import Purger
from .repair import RecentWrites, RepairSchedule
from .sync import SyncIntake

__all__ = ["DROPPED", "Change", "Replica"]

#: Change code returned for an entry dropped while merging a resync dump.
DROPPED = -1

Change = tuple[tuple, trees.Entry, int]
_NO_CHANGES: list = []


class Replica:
    """One node's tree, write counters and replication bookkeeping.

    ``tick`` numbers this node's own changes 1, 2, 3, ... without gaps and is never
    reused; ``tock`` is the hybrid logical clock of the last event seen or made.
    ``seen[origin]`` holds the ticks of ``origin`` whose effect is in our tree.

    At its boundary (:meth:`receive`, :meth:`sync_feed`, :meth:`drain`,
    :meth:`dump`) messages are in their wire form (dicts, see
    :mod:`.messages`); inside they are typed.
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
        repair_extra: int = 9,
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
        #: a repair answer that scans the tree also sends up to this many times the
        #: request's size of what the requester lacks (see :meth:`answer_repair`)
        self.repair_extra = repair_extra

        #: messages to send (typed); :meth:`drain` hands them out in wire form.
        self.outbox: list[Message] = []
        #: conflict records for the ``.distkv`` error tree; drained by the shell.
        self.conflict_log: list[dict] = []
        self.seen: dict[str, TickSet] = {name: TickSet()}
        self._own_seen = self.seen[name]
        #: highest tick announced per origin (presence), beyond what we have seen
        self.known: dict[str, int] = {}
        #: purge horizon: per origin, ticks up to here may have been purged
        self.horizon: dict[str, int] = {}
        self.membership = Membership(dead_after_ms=dead_after_ms, forget_after_ms=forget_after_ms)
        #: name -> :class:`Peer`, from presence
        self.peers: dict[str, Peer] = self.membership.peers
        self.needs_sync = False
        self.syncing = False

        self._writes = RecentWrites(name, ring_size)
        self._repairs = RepairSchedule(
            name,
            delay_ms=repair_delay_ms,
            backoff_ms=repair_backoff_ms,
            max_backoff_ms=repair_max_backoff_ms,
            max_ticks=max_repair_ticks,
        )
        self._purger = Purger(purge_interval_ms)
        self._sync = SyncIntake()
        self._next_presence = 0
        self._last_periodic: int | None = None

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
        old = link_tick(e, name)
        e.write(value, name, tick, t)
        if value is NotGiven:
            self._purger.note(path)
        self._own_seen.add(tick)
        self._writes.own(tick, path)
        self.outbox.append(Update(path, value, e.chain, t, name, tick, old))
        return e

    def local_delete(self, path: tuple, now_ms: int) -> trees.Entry | None:
        """Delete ``path`` (leaves a tombstone); None if there was no value."""
        e = self.tree.lookup(path)
        if e is None or e.value is NotGiven:
            return None
        return self.local_write(path, NotGiven, now_ms)

    def drain(self) -> list[dict]:
        """Take the queued outgoing messages, in their wire form."""
        out = self.outbox
        self.outbox = []
        return [encode(m) for m in out]

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
        self._seen_of(node).add(tick)
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
        chain = as_chain(chain)
        if tock > self.tock:
            self.tock = tock
        e = self.tree.ensure(path)
        on, ot, ok = e.node, e.tick, e.tock
        code = e.merge(value, chain, tock)
        seen = self.seen
        for n, t in chain:  # _mark, inline: this runs for every replicated write
            s = seen.get(n)
            if s is None:
                s = seen[n] = TickSet()
            s.add(t)
            if t > self.tick and n == self.name:
                self.tick = t  # we lost state: never reuse a tick the network has seen
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
            self._purger.note(path)
        return e, code

    # --- messages from peers ------------------------------------------------------------

    def receive(self, msg: dict | Message, now_ms: int) -> list[Change]:
        """Handle one message from a peer (wire form, or typed); returns the tree
        changes it caused. A malformed message raises KeyError, TypeError or
        ValueError; one of an unknown type is ignored."""
        if type(msg) is dict:
            to = msg.get("to")
            if to is not None and to != self.name:
                return _NO_CHANGES
            msg = decode(msg)
        return self._handle(msg, now_ms)

    def _handle(self, msg: Message | None, now_ms: int) -> list[Change]:
        cls = type(msg)
        if cls is Update:
            return self._on_update(msg)
        if getattr(msg, "to", None) not in (None, self.name):
            return _NO_CHANGES
        if cls is Presence:
            self._on_presence(msg, now_ms)
        elif cls is Entry:
            if self.syncing:
                self._sync.buffer.append(msg)
                return _NO_CHANGES
            return self._on_entry(msg)
        elif cls is Repair:
            self._on_repair(msg)
        elif cls is Superseded:
            self._on_superseded(msg)
        return _NO_CHANGES

    def _on_update(self, msg: Update) -> list[Change]:
        if self.syncing:
            self._sync.buffer.append(msg)
            return _NO_CHANGES
        node = msg.node
        tick = msg.tick
        s = self.seen.get(node)
        if s is not None and tick in s:
            # a duplicate, or covered by something newer: re-applying could only
            # resurrect a purged tombstone's victim
            self.observe_tock(msg.tock)
            return _NO_CHANGES
        path = msg.path
        e, code = self.apply_remote(path, msg.value, msg.chain, msg.tock)
        if msg.prev:
            self._mark(node, msg.prev)
        self._writes.received(node, tick, path)
        return [(path, e, code)]

    def _on_entry(self, msg: Entry) -> list[Change]:
        chain = msg.chain
        if not chain:
            return _NO_CHANGES
        if self._all_seen(chain):
            # nothing new for us (and maybe something we purged)
            self.observe_tock(msg.tock)
            return _NO_CHANGES
        e, code = self.apply_remote(msg.path, msg.value, chain, msg.tock)
        return [(msg.path, e, code)]

    def _on_presence(self, msg: Presence, now_ms: int) -> None:
        name = msg.node
        if name == self.name:
            return
        p = self.membership.heard(msg, now_ms)
        if not msg.online:
            return
        if msg.tock is not None:
            self.observe_tock(msg.tock)
        known = self.known
        if p.tick > known.get(name, 0):
            known[name] = p.tick
            self._seen_of(name)
        if msg.seen is not None:
            p.seen = {o: TickSet.from_list(r) for o, r in msg.seen.items()}
            for o, ts in p.seen.items():
                m = ts.max
                if m > known.get(o, 0):
                    known[o] = m
                    self._seen_of(o)
        if known.get(self.name, 0) > self.tick:
            self.tick = known[self.name]
        hz = msg.horizon
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

    def _on_superseded(self, msg: Superseded) -> None:
        origin = msg.origin
        h = msg.horizon
        if h > self._seen_of(origin).prefix:
            # the answer may hide a purged delete: resync instead of trusting it
            self._adopt_horizon({origin: h})
            return
        self._adopt_horizon({origin: h})
        s = self._seen_of(origin)
        for a, b in msg.ranges:
            s.add_range(a, b)
        if origin == self.name and s.max > self.tick:
            self.tick = s.max

    # --- answering repair requests ----------------------------------------------------

    def _on_repair(self, msg: Repair) -> None:
        for _ in self.answer_repair(msg):
            pass

    def answer_repair(self, msg: Repair, pause: int = 0) -> Iterator[None]:
        """Answer a repair request into the outbox. ``pause``: yield (None) after
        every ``pause`` entries of a tree scan, so that a shell can let other clients
        in (and send what the outbox holds so far).

        Ticks the rings no longer hold (a repair after a long broker outage) are found
        by scanning the whole tree, O(entries). As that scan is paid anyway, it also
        sends what the requester lacks beyond the request (by its last presence, up to
        ``repair_extra`` times the request's size, from the request's first tick on):
        otherwise a gap of M ticks costs M / ``max_repair_ticks`` scans (29,000
        missing of 360,000 entries took 75 s). Entries go to the outbox as they are
        found; one that changes later goes out newer: a tick no longer in it is asked
        for again and then answered as superseded.
        """
        if msg.horizon:
            self._adopt_horizon(msg.horizon)  # a requester that purged more than we know of
        if self.needs_sync or self.syncing:
            return  # our data may be older than the horizon: don't spread it
        origin = msg.origin
        dest = msg.node
        have = self.seen.get(origin)
        if have is None:
            return
        want = TickSet.from_list(msg.ranges) & have
        if not want:
            return
        todo = set(want)
        paths = self._writes.find(origin, todo)
        present: set[int] = set()
        for t, p in paths.items():
            e = self.tree.lookup(p)
            if e is not None and link_tick(e, origin) == t:
                present.add(t)
                self.outbox.append(entry_message(p, e, dest))
        rest = todo.difference(paths)
        if rest:
            peer = self.peers.get(dest)
            theirs = peer.seen.get(origin) if peer is not None else None
            budget = self.repair_extra * len(todo) if theirs is not None else 0
            first = min(rest)
            for found in self._scan(origin, pause):
                if found is None:
                    yield
                    continue
                t, p, e = found
                if t in rest:
                    present.add(t)
                elif budget > 0 and t >= first and t not in theirs and t not in present:
                    budget -= 1
                else:
                    continue
                self.outbox.append(entry_message(p, e, dest))
        gone = want - TickSet((t, t + 1) for t in present)
        if gone:
            self.outbox.append(
                Superseded(dest, self.name, origin, gone.to_list(), self.horizon.get(origin, 0))
            )

    def _scan(self, origin: str, pause: int) -> Iterator[tuple[int, Path, trees.Entry] | None]:
        """``(tick, path, entry)`` of every entry with a link of ``origin``; None after
        every ``pause`` entries visited (0: never).

        Not ``Tree.walk``: that lists a node's children as ``(key, entry)`` pairs, and
        200,000 new pairs at once (one node with every written key below it) set off
        Python's full garbage collections, 0.3-0.7 s each on a node of that size, three
        per repair request. Here a node's children are listed by key only (a list of
        existing strings, nothing for the collector) and looked up as the scan gets
        there, so a child removed meanwhile is skipped."""
        root = self.tree.root
        if root.node is not None and (t := link_tick(root, origin)):
            yield t, Path._from_tuple(()), root
        if not root.children:
            return
        keys: list = []
        stack = [(root.children, iter(list(root.children)))]
        visited = 0
        while stack:
            children, it = stack[-1]
            k = next(it, _END)
            if k is _END:
                stack.pop()
                if keys:
                    keys.pop()
                continue
            e = children.get(k)
            if e is None:
                continue
            visited += 1
            if visited == pause:
                visited = 0
                yield None
            if e.node is not None and (t := link_tick(e, origin)):
                yield t, Path._from_tuple((*keys, k)), e
            if e.children:
                keys.append(k)
                stack.append((e.children, iter(list(e.children))))

    # --- periodic work ---------------------------------------------------------------------

    @property
    def tombstone_count(self) -> int:
        """Deletions still remembered (until every live peer has seen them)."""
        return self._purger.count

    @property
    def ready(self) -> bool:
        """False while our data may be stale (needs a sync) or a sync is running."""
        return not (self.needs_sync or self.syncing)

    def presence(self) -> Presence:
        """The presence/heartbeat message (see the package docstring)."""
        return Presence(
            self.name,
            online=True,
            ready=self.ready,
            syncing=self.syncing,
            tick=self.tick,
            tock=self.tock,
            seen={o: s.to_list() for o, s in self.seen.items() if s},
            horizon=dict(self.horizon),
        )

    def is_live(self, peer: Peer, now_ms: int) -> bool:
        return self.membership.is_live(peer, now_ms)

    def members(self, now_ms: int) -> list[Peer]:
        """Peers that tombstone purges wait for: heard from within ``forget_after_ms``
        (see :class:`~.peers.Membership`)."""
        return self.membership.members(now_ms)

    def live_peers(self, now_ms: int) -> list[Peer]:
        return self.membership.live(now_ms)

    def periodic(self, now_ms: int) -> list[tuple]:
        """Periodic work: heartbeat, repair requests, purging. Call every ~100 ms.

        Returns the paths of the tombstones purged now (the shell persists that).
        """
        last, self._last_periodic = self._last_periodic, now_ms
        if last is not None and now_ms - last > self.dead_after_ms:
            self._purger.paused(now_ms, 3 * self.heartbeat_ms)
        if now_ms >= self._next_presence:
            self.outbox.append(self.presence())
            self._next_presence = now_ms + self.heartbeat_ms
        if self.needs_sync or self.syncing:
            return []
        self.outbox.extend(
            self._repairs.requests(self.gaps(), self.horizon, self.membership.repair_peer, now_ms)
        )
        if self._purger.due(now_ms):
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
        """Two-phase tombstone purge (:mod:`.purge`). Returns purged paths."""
        purged: list[tuple] = []
        live = self.members(now_ms)
        names = {p.name for p in live}
        names.add(self.name)
        mp = self._min_prefix(live)
        done = self._purger.settle(names, mp, self.seen)
        if done is None:
            return purged
        if done:
            for path, node, tick in done:
                e = self.tree.lookup(path)
                if e is not None and e.is_tombstone and e.node == node and e.tick == tick:
                    self._drop(path, e)
                    purged.append(path)
            # every link of a purged chain is <= the current minimum prefix
            self._adopt_horizon(mp)
        ticks = {p.name: p.tick for p in live}
        ticks[self.name] = self.tick
        self._purger.collect(self.tree.lookup, mp, ticks)
        return purged

    def _drop(self, path: tuple, e: trees.Entry) -> None:
        """Forget an entry's write (it stays as an intermediate if it has children)."""
        e.value = NotGiven
        e.node = None
        e.tick = 0
        e.tock = 0
        e.prev = trees.EMPTY
        self._purger.discard(path)
        self.tree.prune(path)

    # --- full sync -------------------------------------------------------------------------

    def request_sync(self) -> None:
        """Mark this node as needing a full sync (e.g. it starts without data)."""
        self.needs_sync = True

    def sync_source(self, now_ms: int) -> str | None:
        """The best peer to sync from: live, ready, not behind our horizon."""
        deficit = [(o, h) for o, h in self.horizon.items() if self._seen_of(o).prefix < h]
        return self.membership.sync_source(deficit, now_ms)

    def dump(self) -> Iterator[dict]:
        """The full-sync stream (wire form): header, every entry with a chain, end marker.

        The header's bookkeeping is taken first; entries are read lazily, and as
        merging only moves entries forward, the stream never claims more than it has.
        """
        yield encode(
            SyncHeader(
                self.name,
                self.tick,
                self.tock,
                {o: s.to_list() for o, s in self.seen.items() if s},
                dict(self.horizon),
            )
        )
        for rel, e in self.tree.walk(sort=False):
            if e.node is not None:
                yield encode(entry_message(Path._from_tuple(rel), e, None))
        yield encode(SyncEnd(self.name))

    def sync_begin(self) -> None:
        """Start receiving a dump; bus updates are buffered until it ends."""
        self.syncing = True
        had_data = any(e.node is not None for _, e in self.tree.walk(sort=False))
        self._sync.begin(had_data=had_data)

    def sync_feed(self, msg: dict, now_ms: int) -> list[Change]:
        """Feed one message of a peer's :meth:`dump`; returns the tree changes."""
        m = decode(msg)
        cls = type(m)
        if cls is Entry:
            self._sync.got_path(m.path)
            return self._on_entry(m)
        if cls is SyncHeader:
            self._sync.header = m
            return _NO_CHANGES
        if cls is SyncEnd:
            return self._sync_end(now_ms)
        raise ValueError(f"unexpected message in a dump: {msg.get('type')!r}")

    def _sync_end(self, now_ms: int) -> list[Change]:
        hdr = self._sync.header or SyncHeader("")
        peer_seen = {o: TickSet.from_list(r) for o, r in (hdr.seen or {}).items()}
        changes: list[Change] = []
        paths = self._sync.paths
        if paths is not None:
            # keep only what is newer than the peer's data: an entry the peer has seen
            # but did not send was deleted and purged there
            drop = []
            for rel, e in self.tree.walk(sort=False):
                if e.node is None or rel in paths:
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
        self.observe_tock(hdr.tock or 0)
        self.syncing = False
        self.needs_sync = False
        self._sync.end()
        self._adopt_horizon(hdr.horizon or {})
        self._check_stale()
        changes.extend(self._replay())
        return changes

    def sync_abort(self) -> list[Change]:
        """The dump failed: apply what was buffered; ``needs_sync`` stays as it was."""
        self.syncing = False
        self._sync.end()
        return self._replay()

    def _replay(self) -> list[Change]:
        out: list[Change] = []
        for m in self._sync.take():
            out.extend(self._handle(m, 0))
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
                    self._purger.note(Path._from_tuple(rel))
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
        s = self._seen_of(node)
        s.add_range(start, end)
        if node == self.name and end - 1 > self.tick:
            self.tick = end - 1


_END = object()  # end of a key iterator in _scan
_ROOT = object()  # the root entry's "key" in rebuild_bookkeeping's walk
