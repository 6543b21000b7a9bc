"""SimNet: N pure replicas on a simulated, unreliable network with a simulated clock.

No trio, no sockets: messages are queued with a delivery time and handed to
:meth:`Replica.receive`; :meth:`Replica.periodic` runs every ``tick_ms`` of simulated
time. Links drop, duplicate and delay (hence reorder) messages from a seeded RNG, so a
failing run replays exactly. Partitions cut the links between groups; stopped nodes
neither send, receive nor tick (a crash that keeps its state). Full syncs are modelled
as a dump taken at one moment and delivered ``sync_delay_ms`` later, so bus updates
arriving in between exercise the joiner's buffering.

Typical use::

    net = SimNet(["a", "b", "c"], seed=1, drop=0.2)
    net.write("a", ("x",), 1)
    net.partition({"a"}, {"b", "c"})
    ...
    net.heal()
    assert net.settle()          # deliver + repair until quiet and converged
    net.assert_converged()
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from typing import Any

from ..core.replica import Replica
from ..core.types import NotGiven


class SimNet:
    """A simulated cluster of :class:`Replica` objects."""

    def __init__(
        self,
        names: Iterable[str] | int = 3,
        *,
        seed: int = 0,
        drop: float = 0.0,
        dup: float = 0.0,
        delay: tuple[int, int] = (1, 20),
        tick_ms: int = 100,
        sync_delay_ms: int = 50,
        **replica_kw: Any,
    ):
        if isinstance(names, int):
            names = [f"n{i}" for i in range(names)]
        self.rng = random.Random(seed)
        self.drop = drop
        self.dup = dup
        self.delay = delay
        self.tick_ms = tick_ms
        self.sync_delay_ms = sync_delay_ms
        self.replica_kw = replica_kw
        self.now = 1_000_000  # ms; not 0 so tocks look like real HLC values
        self.replicas: dict[str, Replica] = {}
        self.stopped: set[str] = set()
        self._group: dict[str, int] = {}
        self._queue: list[tuple] = []  # (time, seq, dest, msg | sync-list)
        self._seq = 0
        self._next_tick = self.now
        self._syncing: set[str] = set()
        #: every local write: (path, value or NotGiven, tock, node, tick, chain)
        self.writes: list[tuple] = []
        self.delivered = 0
        self.sent = 0
        for n in names:
            self.add_node(n)

    # --- topology ---------------------------------------------------------------------

    def add_node(self, name: str, *, sync: bool = False) -> Replica:
        """Add a node; with ``sync`` it starts empty and needs a full sync."""
        r = Replica(name, **self.replica_kw)
        if sync:
            r.request_sync()
        # Presence is retained on the broker: a subscriber gets every node's last
        # presence at once, so nodes always know of each other (see _retained).
        for other in self.replicas.values():
            r.receive(other.presence(), self.now)
            other.receive(r.presence(), self.now)
        self.replicas[name] = r
        self._group[name] = 0
        return r

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes talk only within their group (others: group 0)."""
        for n in self._group:
            self._group[n] = 0
        for i, g in enumerate(groups, 1):
            for n in g:
                self._group[n] = i

    def heal(self) -> None:
        for n in self._group:
            self._group[n] = 0

    def stop(self, name: str) -> None:
        self.stopped.add(name)

    def start(self, name: str) -> None:
        self.stopped.discard(name)

    def linked(self, a: str, b: str) -> bool:
        return (
            a not in self.stopped
            and b not in self.stopped
            and self._group.get(a) == self._group.get(b)
        )

    # --- operations -------------------------------------------------------------------

    def write(self, node: str, path: tuple, value: Any) -> None:
        r = self.replicas[node]
        e = r.local_write(path, value, self.now)
        self.writes.append((path, value, e.tock, node, e.tick, e.chain))
        self._flush(node)

    def delete(self, node: str, path: tuple) -> bool:
        r = self.replicas[node]
        e = r.local_delete(path, self.now)
        if e is None:
            return False
        self.writes.append((path, NotGiven, e.tock, node, e.tick, e.chain))
        self._flush(node)
        return True

    # --- message transport ------------------------------------------------------------

    def _send(self, src: str, dest: str, msg: Any, *, lossy: bool = True) -> None:
        rng = self.rng
        if lossy and self.drop and rng.random() < self.drop:
            return
        copies = 2 if lossy and self.dup and rng.random() < self.dup else 1
        for _ in range(copies):
            lo, hi = self.delay
            self._seq += 1
            heapq.heappush(self._queue, (self.now + rng.randint(lo, hi), self._seq, src, dest, msg))
            self.sent += 1

    def _flush(self, src: str) -> None:
        r = self.replicas[src]
        if not r.outbox:
            return
        for msg in r.drain():
            to = msg.get("to")
            dests = [to] if to is not None else [n for n in self.replicas if n != src]
            for d in dests:
                if d in self.replicas and self.linked(src, d):
                    self._send(src, d, msg)

    def _deliver(self, src: str, dest: str, msg: Any) -> None:
        if not self.linked(src, dest):
            if isinstance(msg, list):  # a dump in flight: the connection broke
                self.replicas[dest].sync_abort()
                self._syncing.discard(dest)
            return
        r = self.replicas[dest]
        if isinstance(msg, list):
            for m in msg:
                r.sync_feed(m, self.now)
            self._syncing.discard(dest)
        else:
            r.receive(msg, self.now)
        self.delivered += 1
        self._flush(dest)

    def _start_syncs(self) -> None:
        for name, r in self.replicas.items():
            if name in self.stopped or name in self._syncing or not r.needs_sync:
                continue
            src = r.sync_source(self.now)
            if src is None or not self.linked(name, src):
                continue
            r.sync_begin()
            self._syncing.add(name)
            dump = list(self.replicas[src].dump())
            self._seq += 1
            heapq.heappush(self._queue, (self.now + self.sync_delay_ms, self._seq, src, name, dump))

    def _tick_all(self) -> None:
        for name, r in self.replicas.items():
            if name not in self.stopped:
                r.periodic(self.now)
                self._flush(name)
        self._start_syncs()

    # --- running ----------------------------------------------------------------------

    def run(self, ms: int) -> None:
        """Advance simulated time by ``ms``, delivering messages and ticking replicas."""
        end = self.now + ms
        q = self._queue
        while True:
            t_msg = q[0][0] if q else None
            t_tick = self._next_tick
            if t_msg is not None and t_msg <= t_tick:
                if t_msg > end:
                    break
                _, _, src, dest, msg = heapq.heappop(q)
                self.now = max(self.now, t_msg)
                self._deliver(src, dest, msg)
            else:
                if t_tick > end:
                    break
                self.now = max(self.now, t_tick)
                self._next_tick = self.now + self.tick_ms
                self._tick_all()
        self.now = end

    def quiet(self) -> bool:
        """No gaps, no pending syncs, nothing but heartbeats in flight."""
        for name, r in self.replicas.items():
            if name in self.stopped:
                continue
            if r.needs_sync or r.syncing or r.gaps():
                return False
        return all(
            not isinstance(m[4], list) and m[4].get("type") == "presence" for m in self._queue
        )

    def settle(self, max_ms: int = 300_000, *, step_ms: int = 500) -> bool:
        """Run (links stay lossy) until quiet and converged; False on timeout.

        Every replica must also have heard a heartbeat from every other one, so ticks
        whose every copy was lost are known and repaired before we call it converged.
        """
        end = self.now + max_ms
        while self.now < end:
            self.run(step_ms)
            if self.quiet() and self.converged():
                return True
        return False

    # --- checks -----------------------------------------------------------------------

    def running(self) -> list[Replica]:
        return [r for n, r in self.replicas.items() if n not in self.stopped]

    def horizon(self) -> dict[str, int]:
        """The lowest purge horizon of the running replicas, per origin."""
        rs = self.running()
        out: dict[str, int] = {}
        for o in {o for r in rs for o in r.horizon}:
            out[o] = min(r.horizon.get(o, 0) for r in rs)
        return out

    def _links(self, ch: tuple, hz: dict | None) -> tuple:
        # Chains are compared as head + set of links: the order of non-head links is
        # not replicated state. Links at or below the purge horizon are left out: a
        # replica that purged a tombstone forgot its chain, while one that merged a
        # newer write into the tombstone first kept it; every live node has seen
        # those writes, so they no longer matter to anybody.
        if hz is None:
            hz = self.horizon()
        return (ch[0], tuple(sorted(lk for lk in ch[1:] if lk[1] > hz.get(lk[0], 0))))

    def snapshot(self, r: Replica, hz: dict | None = None) -> dict:
        """``{path: (value, head, other links, tock)}`` of the entries with values."""
        out = {}
        for rel, e in r.tree.walk(sort=False):
            if e.node is None or e.value is NotGiven:
                continue
            out[rel] = (e.value, *self._links(e.chain, hz), e.tock)
        return out

    def tombstones(self, r: Replica, hz: dict | None = None) -> dict:
        """``{path: (head, other links, tock)}`` of the tombstones."""
        out = {}
        for rel, e in r.tree.walk(sort=False):
            if e.is_tombstone:
                out[rel] = (*self._links(e.chain, hz), e.tock)
        return out

    def differences(self) -> list[str]:
        """Human-readable differences between running replicas (empty: converged)."""
        rs = self.running()
        if not rs:
            return []
        ref = rs[0]
        hz = self.horizon()
        snap = self.snapshot(ref, hz)
        tomb = self.tombstones(ref, hz)
        seen = {o: s for o, s in ref.seen.items() if s}
        diffs = []
        for r in rs[1:]:
            s2 = self.snapshot(r, hz)
            if s2 != snap:
                keys = set(s2) ^ set(snap) | {k for k in s2 if k in snap and s2[k] != snap[k]}
                for k in sorted(keys, key=repr)[:5]:
                    diffs.append(f"{ref.name} vs {r.name} at {k}: {snap.get(k)} / {s2.get(k)}")
            t2 = self.tombstones(r, hz)
            for k in set(t2) & set(tomb):
                if t2[k] != tomb[k]:
                    diffs.append(f"tombstone {ref.name} vs {r.name} at {k}: {tomb[k]} / {t2[k]}")
            seen2 = {o: s for o, s in r.seen.items() if s}
            if seen2 != seen:
                diffs.append(f"seen {ref.name} vs {r.name}: {seen} / {seen2}")
        return diffs

    def converged(self) -> bool:
        return not self.differences()

    def assert_converged(self) -> None:
        d = self.differences()
        assert not d, "replicas differ:\n" + "\n".join(d)

    def expected(self) -> dict:
        """What every replica should hold, from the write log alone.

        For each path: the write with the highest ``(tock, node)``; paths whose winner is
        a delete are absent. Valid as long as no delete was purged while a node that
        wrote concurrently was declared dead.
        """
        best: dict = {}
        for path, value, tock, node, _tick, _chain in self.writes:
            k = (tock, node)
            cur = best.get(path)
            if cur is None or k > cur[0]:
                best[path] = (k, value)
        return {p: v for p, (k, v) in best.items() if v is not NotGiven}

    def values(self, r: Replica) -> dict:
        return {p: v[0] for p, v in self.snapshot(r).items()}
