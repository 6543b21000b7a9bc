"""The joiner: how a node gets its initial data, from a peer or by creating a network.

* **Joining**: a node started without ``-i`` and without data does not invent a new
  network: it waits for a ready peer (the replica picks it: ``Replica.sync_source``),
  streams the peer's :meth:`Replica.dump <distkv.core.replica.Replica.dump>` over the
  client protocol (action ``sync_dump``, logging in with ``connect.auth``) while the
  replica buffers live bus updates, and only then becomes ready. A node that missed a
  purge resyncs the same way. Failures back off (0.2 s doubling to 5 s).
* **Creating**: ``-i`` with a broker refuses to start if the network already has
  nodes with data, unless forced (it would overwrite their root value); then it writes
  the initial value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ...core.path import Path
from ...exceptions import AuthError, DistKVError, PermissionDenied, ServerError

if TYPE_CHECKING:
    from ...client.client import Client
    from ...core.replica import Replica
    from ..server import Server
    from .peers import Peers
    from .readiness import Readiness

logger = logging.getLogger(__package__)  # one logger for the replicator's parts

__all__ = ["Connect", "Joiner", "tcp_connect"]

#: ``connect(peer, addr)``: an async context manager yielding a client of that peer
Connect = Callable[[str, tuple], AbstractAsyncContextManager["Client"]]


def tcp_connect(cfg: dict) -> Connect:
    """The default way to reach a peer: TCP to its advertised client address, with
    this node's ``connect`` config (including ``connect.auth``)."""

    @asynccontextmanager
    async def connect(peer: str, addr) -> AsyncIterator[Client]:
        from ...client import open_client
        from ...config import merge

        host, port = addr[0], int(addr[1])
        async with open_client(merge(cfg, {"connect": {"host": host, "port": port}})) as client:
            yield client

    return connect


class Joiner:
    """Runs full syncs from peers while the replica needs one (:meth:`run`).

    ``apply(changes)`` hands replica changes to the server; ``after()`` ends a batch
    of replica work (conflicts, readiness, flush). ``stats`` is the replicator's
    counter table (``syncs``, ``sync_failures`` are counted here).
    """

    def __init__(
        self,
        server: Server,
        replica: Replica,
        *,
        clock: Callable[[], int],
        connect: Connect,
        peers: Peers,
        readiness: Readiness,
        stats: dict[str, int],
        apply: Callable[[list], None],
        after: Callable[[], None],
        sync_timeout: float,
    ):
        self.server = server
        self.replica = replica
        self.name = server.name
        self.clock = clock
        self.connect = connect
        self.peers = peers
        self.readiness = readiness
        self.stats = stats
        self._apply = apply
        self._after = after
        self.sync_timeout = sync_timeout
        #: the last full sync: ``from``, ``messages``, ``seconds`` (and ``t0``)
        self.last_sync: dict | None = None
        self._wake = trio.Event()
        self._waiting_logged = False

    def wake(self) -> None:
        """Something changed that may let a pending sync start (a presence arrived,
        the replica asks for a resync)."""
        self._wake.set()

    # --- creating a network --------------------------------------------------------

    async def create_network(self, bus, *, root: str) -> None:
        """``-i`` with a broker: refuse to start if this network already has nodes with
        data (presence records, live or retained: see :meth:`other_nodes`), unless
        forced: ``-i`` on a running network would overwrite its root value. Then write
        the initial value."""
        srv = self.server
        with trio.move_on_after(self.readiness.ready_timeout):
            await bus.wait_connected()
        if not bus.connected:
            logger.warning(
                "node %s: the broker is unreachable, so whether network %r exists cannot"
                " be checked; creating it with -i",
                self.name,
                root,
            )
        else:
            # retained presence records arrive right after subscribing
            with trio.move_on_after(min(0.5, self.replica.heartbeat_ms / 1000)):
                while not self.other_nodes():
                    await self.peers.wait_arrival()
            others = self.other_nodes()
            if others and not srv.force_init:
                raise ServerError(
                    f"network {root!r} already has nodes ({', '.join(sorted(others))}):"
                    " start without -i to join it (or with --force to overwrite its root)"
                )
        srv.write(Path(), srv.init)
        srv.after_batch()
        self.readiness.caught_up()

    def other_nodes(self) -> list[str]:
        """Other nodes that hold data: a presence with a tick or with something seen,
        or an offline record (it may have had data; its will does not say). A node
        that merely waits for a network to join does not count."""
        return [
            n
            for n, p in self.replica.peers.items()
            if n != self.name and (not p.online or p.tick > 0 or p.ready or any(p.seen.values()))
        ]

    # --- joining -------------------------------------------------------------------

    async def run(self) -> None:
        """Sync whenever the replica needs it and a ready peer is known; forever."""
        r = self.replica
        delay = 0.2
        while True:
            if not r.needs_sync or r.syncing:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            src = r.sync_source(self.clock())
            addr = self.peers.addr.get(src) if src is not None else None
            if src is None or addr is None:
                self.readiness.status = "waiting for peer"
                if not self._waiting_logged:
                    self._waiting_logged = True
                    logger.warning(
                        "node %s has no data: waiting for a peer to sync from "
                        "(start the first node of a new network with -i)",
                        self.name,
                    )
                self._wake = trio.Event()
                with trio.move_on_after(1):
                    await self._wake.wait()
                continue
            if await self._sync_from(src, addr):
                delay = 0.2
                self._waiting_logged = False
            else:
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _sync_from(self, src: str, addr) -> bool:
        """One full sync; True on success."""
        r = self.replica
        self.readiness.status = f"syncing from {src}"
        logger.info("node %s: syncing from %s at %s", self.name, src, addr)
        t0 = time.perf_counter()
        n = 0
        r.sync_begin()
        try:
            with trio.fail_after(self.sync_timeout):
                async with self.connect(src, addr) as client:
                    from ...client.client import StreamCall

                    async with StreamCall(client, "sync_dump", {}) as call:
                        async for item in call:
                            now = self.clock()
                            for m in item.get("items") or ():
                                changes = r.sync_feed(m, now)
                                n += 1
                                if changes:
                                    self._apply(changes)
                            if not r.syncing:  # sync_end was fed: we are done
                                self._synced(src, n, t0)
                                break
                            self._after()
            if r.syncing or self.last_sync is None or self.last_sync["t0"] != t0:
                raise DistKVError("the dump ended early")
        except (DistKVError, OSError, trio.TooSlowError) as exc:
            if r.syncing:
                self._apply(r.sync_abort())
            self._after()
            self.stats["sync_failures"] += 1
            if isinstance(exc, AuthError | PermissionDenied):
                # a configuration problem: say so every time, with the fix
                logger.error(
                    "node %s: peer %s refused our login (%s: %s); set connect.auth in this"
                    " node's config to a user the network knows",
                    self.name, src, type(exc).__name__, exc,
                )  # fmt: skip
            else:
                log = logger.warning if self.stats["sync_failures"] == 1 else logger.info
                log("node %s: sync from %s failed: %s: %s", self.name, src, type(exc).__name__, exc)
            self.readiness.status = "waiting for peer"
            return False
        return True

    def _synced(self, src: str, n: int, t0: float) -> None:
        self.stats["syncs"] += 1
        dt = time.perf_counter() - t0
        self.last_sync = {"from": src, "messages": n, "seconds": round(dt, 3), "t0": t0}
        logger.info("node %s: synced %d messages from %s in %.3f s", self.name, n, src, dt)
        self._after()
