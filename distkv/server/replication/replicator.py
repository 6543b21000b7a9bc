"""The replicator: the thin shell that wires the replication parts and runs them.

Each part has one job; this module only builds them with what they need and starts
their tasks inside :meth:`Replicator.serve`:

* :mod:`.buslink` ``BusLink``: local changes out, bus messages in, presence;
* :mod:`.joiner` ``Joiner``: initial data from a peer (or ``-i`` on a bus);
* :mod:`.readiness` ``Readiness``: when data requests may be answered;
* :mod:`.conflicts` ``ConflictRecorder``: conflict records into ``.distkv conflict``;
* :mod:`.peers` ``Peers``: what the bus link learned about other nodes.

It also does the periodic work (every ~100 ms with a bus, every second without):
``Replica.periodic`` (heartbeat, repair requests, tombstone purging), purges
persisted through ``Server.purged``. Every replica change goes to ``Server.replicated``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import trio

from ...core.admission import BusSeal
from ...core.replica import DROPPED
from ...core.types import NotGiven
from ...exceptions import ConfigError, ServerError
from .buslink import BusLink, advertised_address
from .conflicts import ConflictRecorder
from .joiner import Connect, Joiner, tcp_connect
from .peers import Peers
from .readiness import Readiness

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["Replicator", "has_data"]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


#: the counters of ``internal state`` (``stats``), in the order shown there
STAT_KEYS = (
    "sent",
    "received",
    "overflow",
    "repairs",
    "unsent",
    "bad_messages",
    "lost",
    "syncs",
    "sync_failures",
    "purged",
    "unauthenticated",
    "refused",
)


class Replicator:
    """Drives ``server.replica`` over a bus; see the package docstring.

    ``target`` is what :func:`distkv.bus.open_bus` takes (a URI, the
    ``server.mqtt`` config mapping, a :class:`~distkv.bus.memory.MemoryNetwork`) or
    None for a node without a bus (it still ticks: purges, outbox draining).

    ``clock``: milliseconds for the replica's liveness/repair/purge timing (default
    wall clock; tests pass the trio clock). ``connect(peer, addr)``: an async context
    manager yielding a :class:`~distkv.client.Client` connected to a peer (default: TCP
    to the advertised address with this node's ``connect`` config, including
    ``connect.auth``). The replica's timing knobs are the server's business: it builds
    the replica from ``server.replication`` (typed in the config schema).

    Read-only status for others (``get_state``, ``/metrics``, a nodes page):
    :meth:`state`.
    """

    def __init__(
        self,
        server: Server,
        target: Any,
        *,
        clock: Callable[[], int] | None = None,
        connect: Connect | None = None,
        interval: float = 0.1,
    ):
        self.server = server
        self.replica = r = server.replica
        self.name = server.name
        self.target = target
        scfg = server.cfg["server"]
        self.root = scfg.get("root") or "distkv"
        self.clock = clock or wall_ms
        self.interval = interval
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        # what this node accepts from the bus (distkv/core/admission.py)
        try:
            seal = BusSeal(scfg.get("network_key"))
        except ValueError as exc:
            raise ConfigError(f"server.network_key: {exc}") from None

        self.peers = Peers()
        self.conflicts = ConflictRecorder(server, r, slots=int(scfg.get("conflict_records", 100)))
        self.readiness = Readiness(
            r,
            self.name,
            clock=self.clock,
            peers=self.peers,
            ready_timeout=float(scfg.get("ready_timeout", 5)),
            catchup_timeout=float(scfg.get("catchup_timeout", 3)),
            on_ready=self._on_ready,
            wake_sync=self._wake_sync,
        )
        self.joiner = Joiner(
            server,
            r,
            clock=self.clock,
            connect=connect or tcp_connect(server.cfg),
            peers=self.peers,
            readiness=self.readiness,
            stats=self.stats,
            apply=self.apply,
            after=self._after,
            sync_timeout=float(scfg.get("sync_timeout", 120)),
        )
        self.link = BusLink(
            r,
            self.name,
            clock=self.clock,
            seal=seal,
            peers=self.peers,
            stats=self.stats,
            max_ahead_ms=int(scfg.get("max_clock_ahead_ms", 60_000)),
            coalesce_s=max(0.0, float(scfg.get("bus_coalesce_ms", 2)) / 1000),
            max_held=int(scfg.get("outage_backlog_mb", 64)) * 1024 * 1024,
            advertise=lambda: advertised_address(scfg, server.ports),
            apply=self.apply,
            after=self._after,
            wake_sync=self._wake_sync,
        )

    # --- wiring --------------------------------------------------------------------

    def _on_ready(self) -> None:
        r = self.replica
        # tell the others at once, not at the next heartbeat
        r.outbox.append(r.presence())
        self.conflicts.flush()

    def _wake_sync(self) -> None:
        self.joiner.wake()

    def apply(self, changes: list) -> None:
        """Hand replica changes to the server (watchers, persistence, logs)."""
        self.stats["purged"] += sum(1 for c in changes if c[2] == DROPPED)
        self.server.replicated(changes)

    def _after(self) -> None:
        """End of a batch of replica work: conflicts, readiness, flush everything."""
        self.conflicts.collect()
        self.readiness.check()
        self.server.after_batch()
        self.readiness.progressed()

    # --- read by the server and by status pages --------------------------------------

    @property
    def ready(self) -> bool:
        return self.replica.ready

    @property
    def serving(self) -> bool:
        """Whether data requests may be answered now (synced and caught up)."""
        return self.readiness.serving

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until serving; :class:`~distkv.exceptions.NotReadyError` after
        ``timeout`` (default ``server.ready_timeout``)."""
        await self.readiness.wait_ready(timeout)

    @property
    def status(self) -> str:
        """What the node is doing, in words ("waiting for peer", "ready", ...)."""
        return self.readiness.status

    @property
    def catchup_incomplete(self) -> bool:
        return self.readiness.catchup_incomplete

    @property
    def name_clash(self) -> str | None:
        return self.link.name_clash

    @property
    def bus(self) -> Any:
        """The bus while :meth:`serve` runs with one, else None."""
        return self.link.bus

    @property
    def last_sync(self) -> dict | None:
        return self.joiner.last_sync

    def flush(self) -> None:
        """Publish everything the replica queued (``Server.after_batch`` calls this)."""
        self.link.flush()

    # --- periodic ----------------------------------------------------------------

    def tick(self) -> None:
        """One periodic step: replica housekeeping, purges persisted, messages sent."""
        for p in self.replica.periodic(self.clock()):
            self.stats["purged"] += 1
            self.server.purged(p, None, notify=False)
        self._after()

    async def _periodic(self) -> None:
        # With a bus, repair timing needs a fine step; a lone node only purges
        # tombstones now and then: one wake-up a second keeps it idle on a Pi.
        step = self.interval if self.target is not None else max(self.interval, 1.0)
        while True:
            self.tick()
            await trio.sleep(step)

    # --- running -----------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Starts at once; never waits for the broker."""
        srv = self.server
        r = self.replica
        if self.target is None:
            self.readiness.say("local")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._periodic)
                nursery.start_soon(self._stop_on_name_clash)
                task_status.started()
            return
        from ...bus import open_bus

        catch_up = False
        new_network = srv.init is not NotGiven and not has_data(srv)
        if new_network:
            pass  # -i: this node creates the network, once we know that it does not exist
        elif not has_data(srv):
            # no -i, no state, nothing loaded: this node joins an existing network
            r.request_sync()
        elif srv.init is NotGiven and any(o != self.name for o in r.seen):
            # restarted with its own state, in a network that has other nodes: fetch
            # what was missed before serving (a lone node has nobody to ask)
            catch_up = True
        self.readiness.begin(creating=new_network, catch_up=catch_up)
        link = self.link
        # An MQTT client id of its own per process: with one id for a node name, a
        # second node given the same name (a cloned SD card keeps its host name) made
        # the broker drop each of them in turn, every ~200 ms, for ever, so neither
        # could tell (by presence) that the other exists; see BusLink._name_clash.
        ids = {}
        tgt = self.target
        if isinstance(tgt, str) or (isinstance(tgt, Mapping) and not tgt.get("client_id")):
            ids["client_id"] = f"distkv-{self.root}-{self.name}-{link.instance}"
        try:
            async with (
                open_bus(self.target, self.root, self.name, will=link.will(), **ids) as bus,
                link.subscribed(bus),
                trio.open_nursery() as nursery,
            ):
                if new_network:
                    await self.joiner.create_network(bus, root=self.root)
                if catch_up:
                    nursery.start_soon(self.readiness.catch_up, bus)
                nursery.start_soon(link.presence_task)
                nursery.start_soon(link.coalesce_task)
                nursery.start_soon(link.link_task)
                nursery.start_soon(link.backlog_task)
                nursery.start_soon(self.joiner.run)
                nursery.start_soon(self._periodic)
                nursery.start_soon(self._stop_on_name_clash)
                task_status.started()
        finally:
            link.attach(None)

    async def _stop_on_name_clash(self) -> None:
        """Stop this node if another node with its name was there first: two writers
        with one name make colliding ticks, which replication cannot tell apart."""
        await self.link.clash_stop.wait()
        raise ServerError(
            f"another node named {self.name!r} is already running on this network (client"
            f" port {self.link.name_clash}): give this node another name (distkv server NAME)"
        )

    # --- status ------------------------------------------------------------------

    def state(self) -> dict:
        """Replication status, read-only: ``get_state`` (``distkv client internal
        state``) returns it; status pages and ``/metrics`` read it too. Keys: status,
        peers (with liveness and address), ticks (seen, known, missing), conflicts,
        tombstones, stats (counters), bus, last_sync."""
        r = self.replica
        now = self.clock()
        gaps = r.gaps()
        ticks = {}
        for o, s in sorted(r.seen.items()):
            ticks[o] = {
                "seen": s.to_list(),
                "known": max(r.known.get(o, 0), s.max),
                "missing": [list(g) for g in gaps.get(o, ())],
            }
        peers = {}
        for name, p in sorted(r.peers.items()):
            peers[name] = {
                "online": p.online,
                "live": r.is_live(p, now),
                "ready": p.ready,
                "syncing": p.syncing,
                "tick": p.tick,
                "addr": self.peers.addr.get(name),
                "last_seen_s": round((now - p.last_ms) / 1000, 1) if p.last_ms else None,
            }
        bus = self.bus
        out: dict[str, Any] = {
            "status": self.status,
            "name_clash": self.name_clash,
            "catchup_incomplete": self.catchup_incomplete,
            "ready": r.ready,
            "needs_sync": r.needs_sync,
            "syncing": r.syncing,
            "ticks": ticks,
            "horizon": dict(r.horizon),
            "peers": peers,
            "conflicts": r.conflicts,
            "tombstones": r.tombstone_count,
            "stats": dict(self.stats),
            "bus": None,
        }
        last = self.last_sync
        if last:
            out["last_sync"] = {k: v for k, v in last.items() if k != "t0"}
        if bus is not None:
            out["bus"] = {
                "root": self.root,
                "connected": bus.connected,
                "pending": bus.pending,
                "held_bytes": self.link.held_bytes,
                "incoming": self.link.incoming,
                **asdict(bus.stats),
            }
        return out


def has_data(server: Server) -> bool:
    """Whether the node holds any written entry (tombstones count)."""
    return any(e.node is not None for _, e in server.replica.tree.walk(sort=False))
