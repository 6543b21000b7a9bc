"""What presence tells a replica about the other nodes, and whom to ask for what.

Liveness (``dead_after_ms``) steers repair and sync; membership (``forget_after_ms``,
much longer) is what tombstone purges wait for: a node that is merely down or cut off
for a while must not be left out of a purge.
"""

from __future__ import annotations

from ..ticks import TickSet
from .messages import Presence

__all__ = ["Membership", "Peer"]


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


class Membership:
    """The peers a replica knows (``peers``: name -> :class:`Peer`)."""

    def __init__(self, *, dead_after_ms: int, forget_after_ms: int):
        self.dead_after_ms = dead_after_ms
        self.forget_after_ms = forget_after_ms
        self.peers: dict[str, Peer] = {}

    def heard(self, msg: Presence, now_ms: int) -> Peer:
        """Record a presence message of another node; returns its :class:`Peer`
        (``seen`` and ``horizon`` are the caller's business: they move its own
        bookkeeping too)."""
        p = self.peers.get(msg.node)
        if p is None:
            p = self.peers[msg.node] = Peer(msg.node)
        if not msg.online:
            p.online = False
            p.ready = False
            return p
        p.online = True
        p.last_ms = now_ms
        p.ready = msg.ready
        p.syncing = msg.syncing
        p.tick = msg.tick
        return p

    def is_live(self, peer: Peer, now_ms: int) -> bool:
        return peer.online and now_ms - peer.last_ms <= self.dead_after_ms

    def live(self, now_ms: int) -> list[Peer]:
        return [p for p in self.peers.values() if self.is_live(p, now_ms)]

    def members(self, now_ms: int) -> list[Peer]:
        """Peers that tombstone purges wait for: heard from within ``forget_after_ms``."""
        return [p for p in self.peers.values() if now_ms - p.last_ms <= self.forget_after_ms]

    def repair_peer(self, origin: str, first: int, attempt: int, now_ms: int) -> str | None:
        """Whom to ask: the origin if live, else live peers that have seen ``first``;
        ``attempt`` rotates through them."""
        cands = []
        for p in sorted(self.live(now_ms), key=lambda p: p.name):
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

    def sync_source(self, deficit: list[tuple[str, int]], now_ms: int) -> str | None:
        """The best peer to sync from: live, not syncing; preferably ready and not
        behind the horizons in ``deficit`` (``(origin, horizon)`` we are below);
        among those the one that has seen the most."""
        live = [p for p in self.live(now_ms) if not p.syncing]

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
