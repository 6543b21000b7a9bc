"""Readiness: when this node serves current data.

A node answers data requests only when its replica is ready (it has its tick: it
created the network with ``-i``, loaded its state, or synced from a peer) *and* it
has caught up: a node restarted with its own state first fetches what it missed
(``server.catchup_timeout`` bounds the time without progress). Until then the session's dispatch holds
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

    def say(self, status: str) -> None:
        """What the node does now, in words (the joiner reports its progress here)."""
        self.status = status

    def caught_up(self) -> None:
        """Nothing (more) to wait for besides the replica's own readiness."""
        self._caught_up.set()
        self.check()

    async def catch_up(self, bus) -> None:
        """A node restarted with its own state serves only once it has what it missed.

        Wait for the broker, give live peers' retained presence a moment to arrive
        (nobody there: nothing to catch up), then wait until repair has filled every
        gap. ``server.catchup_timeout`` (default 3 s; at least a repair round,
        ``repair_delay_ms + repair_backoff_ms``) bounds the time *without progress*,
        not the whole catch-up: after a long outage under load a restarted
        node may need tens of seconds of repair, and serving before it is done is
        serving stale data (issue 15: ~20 s of it after a kill -9). Progress is a
        rise of the contiguous prefix of seen ticks (repair fills gaps lowest first;
        live updates above a gap do not count) or a running full sync. Without
        progress for that long (no broker, no peer that answers) the node serves what
        it has and says so in its log and in ``internal state`` (``catchup_incomplete``);
        meanwhile requests wait at most ``server.ready_timeout`` each, then get
        :class:`~distkv.exceptions.NotReadyError`, never stale data.
        """
        r = self.replica
        limit = self.catchup_timeout
        # never shorter than a repair round: the first request waits repair_delay_ms,
        # a lost one is asked again after the backoff
        window = max(limit, (r.repair_delay_ms + r.repair_backoff_ms) / 1000)
        with trio.CancelScope(deadline=trio.current_time() + window) as scope:
            await bus.wait_connected()
            scope.deadline = trio.current_time() + window + r.heartbeat_ms / 1000 * 1.5
            # A retained presence record may be old: wait for each live peer's next
            # heartbeat, which announces its current tick, so gaps() knows what we lack.
            with trio.move_on_after(r.heartbeat_ms / 1000 * 1.5):
                while not r.live_peers(self.clock()) or any(
                    p.name not in self.peers.fresh for p in r.live_peers(self.clock())
                ):
                    await self._progress_made()
            best = -1
            while r.gaps() or r.needs_sync:
                done = sum(s.prefix for s in r.seen.values())
                if done > best or r.syncing:
                    best = done
                    scope.deadline = trio.current_time() + window
                await self._progress_made()
        if scope.cancelled_caught:
            logger.warning(
                "node %s: no progress catching up with peers for %.1f s; serving what it has",
                self.name,
                window,
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
