"""What the bus link has learned about other nodes, for the joiner and readiness.

The bus link (:mod:`.buslink`) fills it from presence messages; the joiner reads
client addresses from it, readiness waits on it. One small object instead of three
parts reaching into each other.
"""

from __future__ import annotations

import trio

__all__ = ["Peers"]


class Peers:
    """Client addresses and liveness news from presence messages."""

    def __init__(self) -> None:
        #: client address (``[host, port]``) of each node that announced one
        self.addr: dict[str, list] = {}
        #: peers heard from live (not through a retained record) since we started
        self.fresh: set[str] = set()
        self._arrived = trio.Event()

    def heard(self, node: str, addr: list | None, *, retained: bool) -> None:
        """A presence with a client address: remember it; a live one makes the peer
        fresh (it announced its current tick)."""
        if addr:
            self.addr[node] = addr
            if not retained:
                self.fresh.add(node)

    def arrived(self) -> None:
        """Some presence message arrived (wakes :meth:`wait_arrival`)."""
        self._arrived.set()

    async def wait_arrival(self) -> None:
        """Wait for the next presence message (one that arrived since the last call
        counts)."""
        await self._arrived.wait()
        self._arrived = trio.Event()
