"""The replication shell: moves messages between the node's Replica and the bus.

:class:`Replicator` is the trio side of :mod:`distkv.core.replica` (which is pure and
says in its module docstring how it must be driven). One runs inside every
:meth:`Server.serve <distkv.server.server.Server.serve>`; ``docs/replication.md``
describes the topics, the message formats and the join / repair / purge procedures.

What it does:

* **Local writes** queue ``update`` messages in the replica's outbox;
  :meth:`Replicator.flush` (called by ``Server.after_batch``) takes them, and a task
  publishes them with ``publish_nowait`` after the batch's replies, coalesced: all
  messages for one topic that piled up while the previous bus message was not yet
  acknowledged (or, once writes pile up, within ``server.bus_coalesce_ms`` of it) go
  out as one bus message (see ``Replicator._send_held``). A
  full bus (``BusOverflowError``) is counted, never waited for: peers notice the gap
  and repair it.
* **Bus messages** (``update/+``, ``repair/<me>``, ``presence/+``) are decoded in
  bursts, fed to :meth:`Replica.receive`, and every resulting change goes through
  ``server.changed`` (watchers, persistence, log files), then ``server.after_batch``.
* **Periodic** work every ~100 ms: :meth:`Replica.periodic` (heartbeat, repair
  requests, tombstone purging); purges are written to the state directory.
* **Presence**: the replica's presence record plus this node's client address
  (``server.advertise`` or the bound address), published retained; the last will
  marks the node offline. Peers find each other's client address there.
* **Joining**: a node started without ``-i`` and without data does not invent a new
  network: it waits for a ready peer, streams the peer's :meth:`Replica.dump` over the
  client protocol (action ``sync_dump``, logging in with ``connect.auth``), while the
  replica buffers live bus updates, and only then becomes ready.
* **Readiness**: while the node is not ready, data requests wait for it (at most
  ``server.ready_timeout`` seconds, default 5) and then fail with
  :class:`~distkv.exceptions.NotReadyError`; ``ping``, ``auth``, ``get_state`` and
  ``stop`` are always answered.
* **Conflicts** are written, bounded, under ``.distkv conflict <node> <slot>`` (a ring
  of ``server.conflict_records`` entries per node, default 100) and flagged on the
  watch events of the affected entries.

A bus that is down never blocks the server: publishing is non-blocking, the bus
reconnects by itself, and a node with data keeps serving reads and writes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import trio

from ..core.admission import BusSeal, refusal
from ..core.path import Path
from ..core.replica import DROPPED, PRESENCE, UPDATE
from ..core.types import NotGiven
from ..exceptions import (
    AuthError,
    ConfigError,
    DistKVError,
    NotReadyError,
    PermissionDenied,
    ServerError,
)
from ..wire import codec

if TYPE_CHECKING:
    from ..client.client import Client
    from .server import Server

logger = logging.getLogger(__name__)

__all__ = ["Replicator"]

CONFLICT = (".distkv", "conflict")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


#: Largest bus payload a batch of messages is packed into.
MAX_PAYLOAD = 64 * 1024


def _payloads(packed: list[bytes]):
    """Pack msgpack-encoded messages into payloads: one message as itself, several as
    a msgpack array (``0xdd`` array32 header + the concatenated messages), each at most
    about :data:`MAX_PAYLOAD` bytes. Yields ``(payload, message count)``."""
    if len(packed) == 1:
        yield packed[0], 1
        return
    chunk: list[bytes] = []
    size = 0
    for p in packed:
        if chunk and size + len(p) > MAX_PAYLOAD:
            yield _array(chunk), len(chunk)
            chunk, size = [], 0
        chunk.append(p)
        size += len(p)
    if chunk:
        yield (_array(chunk), len(chunk)) if len(chunk) > 1 else (chunk[0], 1)


def _array(parts: list[bytes]) -> bytes:
    return b"\xdd" + len(parts).to_bytes(4, "big") + b"".join(parts)


# ------------------------------------------------------------------------- replicator


class Replicator:
    """Drives ``server.replica`` over a bus; see the module docstring.

    ``target`` is what :func:`distkv.bus.base.open_bus` takes (a URI, the
    ``server.mqtt`` config mapping, a :class:`~distkv.bus.memory.MemoryNetwork`) or
    None for a node without a bus (it still ticks: purges, outbox draining).

    ``clock``: milliseconds for the replica's liveness/repair/purge timing (default
    wall clock; tests pass the trio clock). ``connect(peer, addr)``: an async context
    manager yielding a :class:`~distkv.client.Client` connected to a peer (default: TCP
    to the advertised address with this node's ``connect`` config, including
    ``connect.auth``). The replica's timing knobs are the server's business: it builds
    the replica from ``server.replication`` (typed in the config schema).
    """

    def __init__(
        self,
        server: Server,
        target: Any,
        *,
        clock: Callable[[], int] | None = None,
        connect: Callable[[str, tuple], AbstractAsyncContextManager[Client]] | None = None,
        interval: float = 0.1,
    ):
        self.server = server
        self.replica = server.replica
        self.name = server.name
        self.target = target
        scfg = server.cfg["server"]
        self.root = scfg.get("root") or "distkv"
        self.clock = clock or wall_ms
        self.connect = connect or self._tcp_connect
        self.interval = interval
        self.ready_timeout = float(scfg.get("ready_timeout", 5))
        self.sync_timeout = float(scfg.get("sync_timeout", 120))
        self.conflict_slots = max(1, int(scfg.get("conflict_records", 100)))

        self.bus = None
        #: "local" (no bus), "waiting for peer", "syncing from X", "ready"
        self.status = "starting"
        self.peer_addr: dict[str, list] = {}
        self.stats = {
            "sent": 0,
            "received": 0,
            "overflow": 0,
            "unsent": 0,
            "bad_messages": 0,
            "lost": 0,
            "syncs": 0,
            "sync_failures": 0,
            "purged": 0,
            "unauthenticated": 0,
            "refused": 0,
        }
        # what this node accepts from the bus (distkv/core/admission.py)
        try:
            self.seal = BusSeal(scfg.get("network_key"))
        except ValueError as exc:
            raise ConfigError(f"server.network_key: {exc}") from None
        self.max_ahead_ms = int(scfg.get("max_clock_ahead_ms", 60_000))
        self._refusals_logged: set[tuple] = set()
        #: tells this process's presence from another process using our node name
        self.instance = os.urandom(6).hex()
        self.name_clash: str | None = None
        self.last_sync: dict | None = None
        self._ready_evt = trio.Event()
        self._caught_up = trio.Event()  # replaced by an unset one while catching up
        self._caught_up.set()
        self._progress = trio.Event()  # set by _after while catching up
        self._presence_arrived = trio.Event()
        self.catchup_incomplete = False
        #: peers heard from live (not through a retained record) since we started
        self.fresh_peers: set[str] = set()
        self._wake_sync = trio.Event()
        self._presence: dict | None = None
        self._presence_evt = trio.Event()
        self._pending_conflicts: list[dict] = []
        # Outgoing messages by topic, waiting for the bus (see _send_held).
        self._held: dict[str, list[bytes]] = {}
        self._held_evt = trio.Event()
        self._next_send = 0.0
        #: Least time between two sends of held messages (``server.bus_coalesce_ms``).
        self.coalesce_s = max(0.0, float(scfg.get("bus_coalesce_ms", 2)) / 1000)
        self._waiting_logged = False
        if self.replica.ready:
            self._ready_evt.set()

    # --- readiness ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.replica.ready

    @property
    def serving(self) -> bool:
        """Whether data requests may be answered now (synced and caught up); the
        session's dispatch holds them, in order, until this is true."""
        return self.replica.ready and self._caught_up.is_set()

    async def _catch_up(self) -> None:
        """A node restarted with its own state serves only once it has what it missed.

        Bounded by ``server.catchup_timeout`` (default 3 s): wait for the broker, give
        live peers' retained presence a moment to arrive (nobody there: nothing to
        catch up), then wait until repair has filled every gap. Past the bound the node
        serves anyway and says so in its log and in ``internal state``.
        """
        r = self.replica
        limit = float(self.server.cfg["server"].get("catchup_timeout", 3))
        with trio.move_on_after(limit) as scope:
            await self.bus.wait_connected()
            # A retained presence record may be old: wait for each live peer's next
            # heartbeat, which announces its current tick, so gaps() knows what we lack.
            with trio.move_on_after(r.heartbeat_ms / 1000 * 1.5):
                while not r.live_peers(self.clock()) or any(
                    p.name not in self.fresh_peers for p in r.live_peers(self.clock())
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
        self._caught_up.set()
        self._check_ready()

    async def _init_new_network(self, bus) -> None:
        """``-i`` with a broker: refuse to start if this network already has nodes with
        data (presence records, live or retained: see :meth:`_other_nodes`), unless
        forced: ``-i`` on a running network would overwrite its root value. Then write
        the initial value."""
        srv = self.server
        with trio.move_on_after(self.ready_timeout):
            await bus.wait_connected()
        if not bus.connected:
            logger.warning(
                "node %s: the broker is unreachable, so whether network %r exists cannot"
                " be checked; creating it with -i",
                self.name,
                self.root,
            )
        else:
            # retained presence records arrive right after subscribing
            with trio.move_on_after(min(0.5, self.replica.heartbeat_ms / 1000)):
                while not self._other_nodes():
                    await self._presence_arrived.wait()
                    self._presence_arrived = trio.Event()
            others = self._other_nodes()
            if others and not srv.force_init:
                raise ServerError(
                    f"network {self.root!r} already has nodes ({', '.join(sorted(others))}):"
                    " start without -i to join it (or with --force to overwrite its root)"
                )
        srv.write(Path(), srv.init)
        srv.after_batch()
        self._caught_up.set()
        self._check_ready()

    def _other_nodes(self) -> list[str]:
        """Other nodes that hold data: a presence with a tick or with something seen,
        or an offline record (it may have had data; its will does not say). A node
        that merely waits for a network to join does not count."""
        return [
            n
            for n, p in self.replica.peers.items()
            if n != self.name and (not p.online or p.tick > 0 or p.ready or any(p.seen.values()))
        ]

    async def _progress_made(self) -> None:
        """Wait until the replica has handled more bus traffic (see :meth:`_after`);
        at most a heartbeat, since peers' liveness also changes with time alone."""
        with trio.move_on_after(self.replica.heartbeat_ms / 1000):
            await self._progress.wait()

    def _check_ready(self) -> None:
        """Open or close the request gate after the replica's readiness changed."""
        r = self.replica
        if r.ready and self._caught_up.is_set():
            if not self._ready_evt.is_set():
                self._ready_evt.set()
                self.status = "ready"
                logger.warning("node %s is ready", self.name)
                # tell the others at once, not at the next heartbeat
                r.outbox.append(r.presence())
                self._flush_pending_conflicts()
        else:
            if self._ready_evt.is_set():
                self._ready_evt = trio.Event()
                logger.warning("node %s needs a resync (it may have missed a purge)", self.name)
            if r.needs_sync and not r.syncing:
                self._wake_sync.set()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the node is ready; :class:`NotReadyError` after ``timeout``
        (default ``server.ready_timeout``)."""
        if self.replica.ready and self._caught_up.is_set():
            return
        with trio.move_on_after(self.ready_timeout if timeout is None else timeout):
            while not (self.replica.ready and self._caught_up.is_set()):
                await self._ready_evt.wait()
        if not (self.replica.ready and self._caught_up.is_set()):
            raise NotReadyError(f"node {self.name} is not ready: {self.status}")

    # --- outgoing ----------------------------------------------------------------

    def flush(self) -> None:
        """Publish everything the replica queued (``Server.after_batch`` calls this)."""
        r = self.replica
        if not r.outbox:
            return
        msgs = r.drain()
        bus = self.bus
        if bus is None:
            for m in msgs:
                if m["type"] == PRESENCE:
                    self._set_presence(m)
            return
        name = self.name
        # Never connected (no broker yet, or none at all): nobody to tell, and queueing
        # would only fill memory; peers learn these ticks by presence and repair.
        # After a connection was lost, QoS 1 messages are queued (up to max_pending)
        # and sent on reconnect, which saves repair work after short outages.
        hold = not bus.connected and not bus.stats.connects
        held = self._held
        for m in msgs:
            if m["type"] == PRESENCE:
                self._set_presence(m)
                continue
            if hold:
                self.stats["unsent"] += 1
                continue
            to = m.get("to")
            topic = f"repair/{to}" if to is not None else f"update/{name}"
            held.setdefault(topic, []).append(codec.packb(m))
        if not held:
            return
        if bus.connected:
            # _coalesce_task sends them, after this batch's replies went out, and
            # together with whatever else arrives while the previous message is not
            # yet acknowledged. See _send_held for why.
            self._held_evt.set()
            return
        self._send_held()  # into the bus's offline queue, sent on reconnect

    def _send_held(self) -> None:
        """Publish the held messages, one bus message (a msgpack array) per topic.

        Why coalesce: a bus message costs far more than a write, counted over the
        processes of a deployment: a send here (which wakes mosquitto), the broker's
        work, a wake-up of every receiving node, and PUBACKs. Published one per
        request, a sequential client on a node with a broker and a second node got
        ~20 % of a lone node's rate (2 cores). So :meth:`_coalesce_task` sends only
        when the previous messages are acknowledged and, if the previous send carried
        more than one message (writes are piling up), at least
        ``server.bus_coalesce_ms`` (default 2) after it. A write after a quiet spell
        or one at a time (paced events, a writer that waits for the far node) goes out
        at once; under load messages grow instead of multiplying, and the extra delay
        is bounded by that interval plus a broker round trip.
        """
        bus = self.bus
        held, self._held = self._held, {}
        n = 0
        for topic, packed in held.items():
            n += len(packed)
            for payload, count in _payloads(packed):
                if bus.pending >= bus.max_pending:
                    self.stats["overflow"] += count
                    continue
                try:
                    bus.publish_nowait(topic, self.seal.seal(payload))
                except DistKVError:  # BusOverflowError, BusClosedError: repair catches up
                    self.stats["overflow"] += count
                else:
                    self.stats["sent"] += count
        bus.write_now()
        # The interval applies only once writes pile up: a lone write (ping-pong, paced
        # events) must not wait for it; a writer that never waits for anything must.
        self._next_send = trio.current_time() + (self.coalesce_s if n > 1 else 0.0)

    async def _coalesce_task(self) -> None:
        """Send held messages once the bus has nothing in flight and the coalescing
        interval since the last send has passed (see :meth:`_send_held`).

        Sending from this task rather than from :meth:`flush` also means the batch's
        replies go out first: the send to the broker (and the wake-up of mosquitto it
        causes) no longer sits between a client's request and its answer."""
        bus = self.bus
        try:
            while True:
                await self._held_evt.wait()
                self._held_evt = trio.Event()
                while self._held:
                    await bus.drain()
                    wait = self._next_send - trio.current_time()
                    if wait > 0:
                        await trio.sleep(wait)
                    if self._held:
                        self._send_held()
        except DistKVError:  # BusClosedError: nothing more to send
            pass
        finally:
            # shutting down: hand what is held to the bus, whose clean close sends it
            if self._held and not bus.closed:
                self._send_held()

    def _set_presence(self, m: dict) -> None:
        m["addr"] = self.advertised()
        m["version"] = 1
        m["instance"] = self.instance
        self._presence = m
        self._presence_evt.set()

    def advertised(self) -> list | None:
        """The client address peers should use: ``server.advertise`` (``host``,
        ``host:port`` or ``{host, port}``), else the first bound address."""
        adv = self.server.cfg["server"].get("advertise")
        host = port = None
        if self.server.ports:
            host, port = self.server.ports[0][:2]
        if isinstance(adv, dict):
            host = adv.get("host") or host
            port = adv.get("port") or port
        elif isinstance(adv, str) and adv:
            h, sep, p = adv.rpartition(":")
            if sep and p.isdigit() and not h.endswith(":"):
                host, port = h.strip("[]"), int(p)
            else:
                host = adv
        if host is None or port is None:
            return None
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return [host, int(port)]

    # --- incoming ----------------------------------------------------------------

    def handle(self, msgs: list) -> None:
        """Feed a burst of bus messages to the replica and apply the changes."""
        now = self.clock()
        own = f"update/{self.name}"
        presence = False
        for bm in msgs:
            if bm.lost:
                self.stats["lost"] += bm.lost
            if bm.topic == own or not bm.payload:
                continue
            payload = self.seal.open(bm.payload)
            if payload is None:
                self.stats["unauthenticated"] += 1
                self._refused(bm.topic, "no valid MAC (another network key, or a forger)")
                continue
            try:
                data = codec.unpackb(payload)
                batch = data if isinstance(data, list) else [data]
                for m in batch:
                    m["type"]  # noqa: B018 - every message must have one
            except Exception as exc:  # noqa: BLE001 - a foreign publisher must not kill us
                self.stats["bad_messages"] += 1
                if self.stats["bad_messages"] == 1:
                    logger.warning("undecodable bus message on %s: %r", bm.topic, exc)
                continue
            sender = bm.topic.partition("/")[2] if bm.topic.startswith("update/") else None
            for m in batch:
                why = refusal(m, now, self.max_ahead_ms)
                if why is None and sender is not None and m.get("node") != sender:
                    why = f"node {m.get('node')!r} on {sender}'s topic"
                if why is not None:
                    self.stats["refused"] += 1
                    self._refused(bm.topic, why)
                    continue
                presence |= self._receive(m, bm, now)
        if presence:
            self._wake_sync.set()
        self._after()

    def _name_clash(self, m: dict) -> None:
        """A live presence with our name from another process: two nodes were given
        the same name. Say so once, in one line, with where the other one is."""
        addr = m.get("addr")
        where = f"{addr[0]}:{addr[1]}" if isinstance(addr, list) and len(addr) == 2 else "?"
        if self.name_clash is None:
            logger.error(
                "another node named %r is on this network (client port %s): node names "
                "must be unique; give one of them another name",
                self.name,
                where,
            )
        self.name_clash = where

    def _refused(self, topic: str, why: str) -> None:
        """Log a refused bus message once per topic and kind of reason (a forger or
        a node with a wrong clock must not flood the log); counts are in stats."""
        key = (topic, why.split(" ", 1)[0])
        if key not in self._refusals_logged and len(self._refusals_logged) < 1000:
            self._refusals_logged.add(key)
            logger.warning("node %s: refused a bus message on %s: %s", self.name, topic, why)

    def _receive(self, m: dict, bm, now: int) -> bool:
        """One replication message; True if it was presence (the sync loop may act)."""
        typ = m["type"]
        self.stats["received"] += 1
        presence = typ == PRESENCE
        if presence:
            self._presence_arrived.set()
        if presence and m.get("node") == self.name:
            other = m.get("instance")
            if other is not None and other != self.instance and not bm.retained:
                self._name_clash(m)
            return False
        if presence:
            node = m.get("node")
            if m.get("online", True) and m.get("addr"):
                self.peer_addr[node] = m["addr"]
                if not bm.retained:  # a heartbeat sent now, not an old record
                    self.fresh_peers.add(node)
        try:
            changes = self.replica.receive(m, now)
        except (KeyError, TypeError, ValueError) as exc:
            self.stats["bad_messages"] += 1
            logger.warning("bad %s message on %s: %r", typ, bm.topic, exc)
            return presence
        if changes:
            self.apply(changes)
        return presence

    def apply(self, changes: list) -> None:
        """Hand replica changes to the server (watchers, persistence, logs)."""
        self.stats["purged"] += sum(1 for c in changes if c[2] == DROPPED)
        self.server.replicated(changes)

    def _purged(self, path: tuple, e, notify: bool) -> None:
        self.stats["purged"] += 1
        self.server.purged(path, e, notify=notify)

    def _after(self) -> None:
        """End of a batch of replica work: conflicts, readiness, flush everything."""
        r = self.replica
        if r.conflict_log:
            self._pending_conflicts.extend(r.drain_conflicts())
            del self._pending_conflicts[: -self.conflict_slots]
        if self._pending_conflicts and r.ready:
            self._flush_pending_conflicts()
        self._check_ready()
        self.server.after_batch()
        if not self._caught_up.is_set():
            self._progress.set()
            self._progress = trio.Event()

    def _flush_pending_conflicts(self) -> None:
        """Write conflict records (only when ready: a node that has not learned its
        tick yet must not write)."""
        recs, self._pending_conflicts = self._pending_conflicts, []
        r = self.replica
        k = self.conflict_slots
        first = r.conflicts - len(recs)
        base = (*CONFLICT, self.name)
        for i, rec in enumerate(recs):
            n = first + i
            p = rec["path"]
            value = {
                "path": p if isinstance(p, Path) else Path.build(p),
                "winner": list(rec["winner"]),
                "loser": list(rec["loser"]),
                "n": n,
                "time": time.time(),
            }
            self.server.write(Path.build((*base, n % k)), value)

    # --- periodic ----------------------------------------------------------------

    def tick(self) -> None:
        """One periodic step: replica housekeeping, purges persisted, messages sent."""
        for p in self.replica.periodic(self.clock()):
            self._purged(p, None, notify=False)
        self._after()

    async def _periodic(self) -> None:
        # With a bus, repair timing needs a fine step; a lone node only purges
        # tombstones now and then: one wake-up a second keeps it idle on a Pi.
        step = self.interval if self.target is not None else max(self.interval, 1.0)
        while True:
            self.tick()
            await trio.sleep(step)

    async def _presence_task(self) -> None:
        while True:
            await self._presence_evt.wait()
            self._presence_evt = trio.Event()
            m = self._presence
            if m is None or self.bus is None:
                continue
            try:
                with trio.move_on_after(5):
                    await self.bus.set_presence(self.seal.seal(codec.packb(m)))
            except DistKVError as exc:
                logger.debug("cannot publish presence: %r", exc)

    # --- joining -----------------------------------------------------------------

    @asynccontextmanager
    async def _tcp_connect(self, peer: str, addr) -> AsyncIterator[Client]:
        from ..client import open_client
        from ..config import merge

        host, port = addr[0], int(addr[1])
        cfg = merge(self.server.cfg, {"connect": {"host": host, "port": port}})
        async with open_client(cfg) as client:
            yield client

    async def _sync_loop(self) -> None:
        r = self.replica
        delay = 0.2
        while True:
            if not r.needs_sync or r.syncing:
                self._wake_sync = trio.Event()
                await self._wake_sync.wait()
                continue
            src = r.sync_source(self.clock())
            addr = self.peer_addr.get(src) if src is not None else None
            if src is None or addr is None:
                self.status = "waiting for peer"
                if not self._waiting_logged:
                    self._waiting_logged = True
                    logger.warning(
                        "node %s has no data: waiting for a peer to sync from "
                        "(start the first node of a new network with -i)",
                        self.name,
                    )
                self._wake_sync = trio.Event()
                with trio.move_on_after(1):
                    await self._wake_sync.wait()
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
        self.status = f"syncing from {src}"
        logger.info("node %s: syncing from %s at %s", self.name, src, addr)
        t0 = time.perf_counter()
        n = 0
        r.sync_begin()
        try:
            with trio.fail_after(self.sync_timeout):
                async with self.connect(src, addr) as client:
                    from ..client.client import StreamCall

                    async with StreamCall(client, "sync_dump", {}) as call:
                        async for item in call:
                            now = self.clock()
                            for m in item.get("items") or ():
                                changes = r.sync_feed(m, now)
                                n += 1
                                if changes:
                                    self.apply(changes)
                            if not r.syncing:  # sync_end was fed: we are done
                                self._synced(src, n, t0)
                                break
                            self._after()
            if r.syncing or self.last_sync is None or self.last_sync["t0"] != t0:
                raise DistKVError("the dump ended early")
        except (DistKVError, OSError, trio.TooSlowError) as exc:
            if r.syncing:
                self.apply(r.sync_abort())
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
            self.status = "waiting for peer"
            return False
        return True

    def _synced(self, src: str, n: int, t0: float) -> None:
        self.stats["syncs"] += 1
        dt = time.perf_counter() - t0
        self.last_sync = {"from": src, "messages": n, "seconds": round(dt, 3), "t0": t0}
        logger.info("node %s: synced %d messages from %s in %.3f s", self.name, n, src, dt)
        self._after()

    # --- running -----------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Starts at once; never waits for the broker."""
        srv = self.server
        r = self.replica
        if self.target is None:
            self.status = "local"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._periodic)
                task_status.started()
            return
        from ..bus.base import open_bus

        catch_up = False
        new_network = srv.init is not NotGiven and not has_data(srv)
        if new_network:
            # -i: this node creates the network, once we know that it does not exist
            self._caught_up = trio.Event()
            self.status = "checking that the network is new"
        elif not has_data(srv):
            # no -i, no state, nothing loaded: this node joins an existing network
            r.request_sync()
        elif srv.init is NotGiven and any(o != self.name for o in r.seen):
            # restarted with its own state, in a network that has other nodes: fetch
            # what was missed before serving (a lone node has nobody to ask)
            catch_up = True
        self.status = "ready" if r.ready else "waiting for peer"
        if not r.ready or catch_up:
            self._ready_evt = trio.Event()
        if catch_up:
            self._caught_up = trio.Event()
            self.status = "catching up"
        will = self.seal.seal(codec.packb({"type": PRESENCE, "node": self.name, "online": False}))
        try:
            async with (
                open_bus(self.target, self.root, self.name, will=will) as bus,
                # handler subscriptions: messages are applied by the task that reads
                # the bus, once per burst, with no task switch in between
                bus.subscribe("presence/+", handler=self.handle),
                # QoS 0 delivery: no PUBACK per message from every receiver (and from
                # this node for its own updates, which the broker echoes); loses
                # nothing QoS 1 would keep with clean sessions (distkv.bus.base)
                bus.subscribe(f"{UPDATE}/+", handler=self.handle, qos=0),
                bus.subscribe(f"repair/{self.name}", handler=self.handle, qos=0),
                trio.open_nursery() as nursery,
            ):
                self.bus = bus
                if new_network:
                    await self._init_new_network(bus)
                if catch_up:
                    nursery.start_soon(self._catch_up)
                nursery.start_soon(self._presence_task)
                nursery.start_soon(self._coalesce_task)
                nursery.start_soon(self._sync_loop)
                nursery.start_soon(self._periodic)
                task_status.started()
        finally:
            self.bus = None

    # --- status ------------------------------------------------------------------

    def state(self) -> dict:
        """Replication status for ``get_state`` (``distkv client internal state``)."""
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
                "addr": self.peer_addr.get(name),
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
        if self.last_sync:
            out["last_sync"] = {k: v for k, v in self.last_sync.items() if k != "t0"}
        if bus is not None:
            out["bus"] = {
                "root": self.root,
                "connected": bus.connected,
                "pending": bus.pending,
                **asdict(bus.stats),
            }
        return out


def has_data(server: Server) -> bool:
    """Whether the node holds any written entry (tombstones count)."""
    return any(e.node is not None for _, e in server.replica.tree.walk(sort=False))
