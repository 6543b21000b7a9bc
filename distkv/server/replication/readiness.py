"""Readiness: when this node serves current data.

A node answers data requests only when its replica is ready (it has its tick: it
created the network with ``-i``, loaded its state, or synced from a peer) *and* it
has caught up: a node restarted with its own state first fetches what it missed
(bounded by ``server.catchup_timeout``). Until then the session's dispatch holds
data requests (:attr:`Readiness.serving`), in order, at most ``server.ready_timeout``
seconds (default 5), then fails them with :class:`~distkv.exceptions.NotReadyError`.

:attr:`Readiness.status` says in words what the node is doing meanwhile ("local",
"waiting for peer", "syncing from X", "catching up", "ready"); ``distkv server`` puts
it into systemd's STATUS=.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ...exceptions import NotReadyError

if TYPE_CHECKING:
    from ...core.replica import Replica
    from .peers import Peers

logger = logging.getLogger(__package__)  # one logger for the replicator's parts

__all__ = ["Readiness"]


class Readiness:
    """The request gate and the catch-up after a restart.

    ``on_ready()`` runs once each time the node becomes ready (the shell announces
    the presence at once and writes held conflict records); ``wake_sync()`` when the
    replica needs a (re)sync that is not running yet.
    """

    def __init__(
        self,
        replica: Replica,
        name: str,
        *,
        clock: Callable[[], int],
        peers: Peers,
        ready_timeout: float,
        catchup_timeout: float,
        on_ready: Callable[[], None],
        wake_sync: Callable[[], None],
    ):
        self.replica = replica
        self.name = name
        self.clock = clock
        self.peers = peers
        self.ready_timeout = ready_timeout
        self.catchup_timeout = catchup_timeout
        self._on_ready = on_ready
        self._wake_sync = wake_sync
        #: "starting", "local" (no bus), "waiting for peer", "syncing from X",
        #: "catching up", "ready"
        self.status = "starting"
        #: the catch-up ran out of time; the node serves what it has
        self.catchup_incomplete = False
        self._ready_evt = trio.Event()
        self._caught_up = trio.Event()  # replaced by an unset one while catching up
        self._caught_up.set()
        self._progress = trio.Event()  # set by progressed() while catching up
        if replica.ready:
            self._ready_evt.set()

    @property
    def serving(self) -> bool:
        """Whether data requests may be answered now (synced and caught up); the
        session's dispatch holds them, in order, until this is true."""
        return self.replica.ready and self._caught_up.is_set()

    def begin(self, *, creating: bool, catch_up: bool) -> None:
        """Close the gate as the start requires: ``creating`` a network (``-i`` on a
        bus) waits for the check that it is new; ``catch_up`` waits for what this
        node missed while it was down."""
        r = self.replica
        if creating:
            self._caught_up = trio.Event()
        self.status = "ready" if r.ready else "waiting for peer"
        if not r.ready or catch_up:
            self._ready_evt = trio.Event()
        if catch_up:
            self._caught_up = trio.Event()
            self.status = "catching up"

    def caught_up(self) -> None:
        """Nothing (more) to wait for besides the replica's own readiness."""
        self._caught_up.set()
        self.check()

    async def catch_up(self, bus) -> None:
        """A node restarted with its own state serves only once it has what it missed.

        Bounded by ``server.catchup_timeout`` (default 3 s): wait for the broker, give
        live peers' retained presence a moment to arrive (nobody there: nothing to
        catch up), then wait until repair has filled every gap. Past the bound the node
        serves anyway and says so in its log and in ``internal state``.
        """
        r = self.replica
        limit = self.catchup_timeout
        with trio.move_on_after(limit) as scope:
            await bus.wait_connected()
            # A retained presence record may be old: wait for each live peer's next
            # heartbeat, which announces its current tick, so gaps() knows what we lack.
            with trio.move_on_after(r.heartbeat_ms / 1000 * 1.5):
                while not r.live_peers(self.clock()) or any(
                    p.name not in self.peers.fresh for p in r.live_peers(self.clock())
                ):
                    await self._progress_made()
            while r.gaps() or r.needs_sync:
                await self._progress_made()
        if scope.cancelled_caught:
            logger.warning(
                "node %s: could not catch up with peers within %.1f s; serving what it has",
                self.name,
                limit,
            )
            self.catchup_incomplete = True
        self.caught_up()

    async def _progress_made(self) -> None:
        """Wait until the replica has handled more bus traffic (see :meth:`progressed`);
        at most a heartbeat, since peers' liveness also changes with time alone."""
        with trio.move_on_after(self.replica.heartbeat_ms / 1000):
            await self._progress.wait()

    def progressed(self) -> None:
        """End of a batch of replica work: wake a running catch-up."""
        if not self._caught_up.is_set():
            self._progress.set()
            self._progress = trio.Event()

    def check(self) -> None:
        """Open or close the request gate after the replica's readiness changed."""
        r = self.replica
        if r.ready and self._caught_up.is_set():
            if not self._ready_evt.is_set():
                self._ready_evt.set()
                self.status = "ready"
                logger.warning("node %s is ready", self.name)
                self._on_ready()
        else:
            if self._ready_evt.is_set():
                self._ready_evt = trio.Event()
                logger.warning("node %s needs a resync (it may have missed a purge)", self.name)
            if r.needs_sync and not r.syncing:
                self._wake_sync()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the node is ready; :class:`NotReadyError` after ``timeout``
        (default ``server.ready_timeout``)."""
        if self.serving:
            return
        with trio.move_on_after(self.ready_timeout if timeout is None else timeout):
            while not self.serving:
                await self._ready_evt.wait()
        if not self.serving:
            raise NotReadyError(f"node {self.name} is not ready: {self.status}")
