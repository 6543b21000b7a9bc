"""The bus link: local changes out to the bus, bus messages in to the replica.

* **Out.** Local writes queue ``update`` messages in the replica's outbox;
  :meth:`BusLink.flush` (``Server.after_batch`` calls it through the replicator)
  takes them, and :meth:`BusLink.coalesce_task` publishes them with
  ``publish_nowait`` after the batch's replies, coalesced: all messages for one topic
  that piled up while the previous bus message was not yet acknowledged (or, once
  writes pile up, within ``server.bus_coalesce_ms`` of it) go out as one bus message
  (see :meth:`BusLink._send_held`). A full bus (``BusOverflowError``) is counted,
  never waited for: peers notice the gap and repair it.
* **Outage backlog.** While the broker is away, outgoing messages are held
  (``held.py``, bounded by ``server.outage_backlog_mb``, past it counted as overflow)
  and sent once the broker and the peers are back, a slice at a time
  (:meth:`BusLink.coalesce_task`): the peers apply them as they would have live
  instead of repairing each tick. Repair requests for own ticks still held are not
  answered (they are on their way).
* **Presence**: the replica's presence record plus this node's client address
  (``server.advertise`` or the bound address), published retained; the last will
  marks the node offline. Peers find each other's client address there (:class:`Peers`).
* **In.** Bus messages (``update/+``, ``repair/<me>``, ``presence/+``) are opened
  (MAC, ``core/admission.py``), decoded in bursts and fed to ``Replica.receive``;
  the resulting changes go to the server (``apply``), then the batch ends (``after``).

A bus that is down never blocks the server: publishing is non-blocking, the bus
reconnects by itself, and a node with data keeps serving reads and writes.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from ...core.admission import BusSeal, refusal
from ...core.replica import PRESENCE, REPAIR, UPDATE, Presence, Repair, decode, encode
from ...exceptions import DistKVError
from ...wire import codec
from .held import HeldMessages, bus_payload, not_held, peers_back

if TYPE_CHECKING:
    from ...core.replica import Replica
    from .peers import Peers

logger = logging.getLogger(__package__)  # one logger for the replicator's parts

__all__ = ["MAX_PAYLOAD", "BusLink", "advertised_address"]

#: Largest bus payload a batch of messages is packed into.
MAX_PAYLOAD = 64 * 1024
#: Bus payload bytes applied in one step; a larger burst is applied in slices.
SLICE_BYTES = 64 * 1024
#: Entries a repair's tree scan walks between two yields.
SCAN_SLICE = 2000
#: Held bytes handed to the bus in one step (after an outage: the backlog goes out in
#: steps of this size, each once the previous one is acknowledged by the broker).
SEND_SLICE = 1024 * 1024
#: Longest wait after a reconnect for the peers to be back before sending what was held
#: (see ``held.peers_back``); peers reconnect within the bus's max_backoff (default 1 s).
PEERS_BACK_S = 5.0


def advertised_address(scfg: dict, ports: list) -> list | None:
    """The client address peers should use: ``server.advertise`` (``host``,
    ``host:port`` or ``{host, port}``), else the first bound address."""
    adv = scfg.get("advertise")
    host = port = None
    if ports:
        host, port = ports[0][:2]
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


class BusLink:
    """Moves replica messages between the replica and one bus.

    ``clock()``: milliseconds for admission checks and the replica's timing;
    ``advertise()`` gives this node's client address for its presence;
    ``apply(changes)`` hands replica changes to the server, ``after()`` ends a batch
    of replica work, ``wake_sync()`` tells the joiner that a presence arrived.
    ``stats`` is the replicator's counter table (shared, one table in
    ``internal state``). The bus itself exists only inside :meth:`open`.
    """

    def __init__(
        self,
        replica: Replica,
        name: str,
        *,
        clock: Callable[[], int],
        seal: BusSeal,
        peers: Peers,
        stats: dict[str, int],
        max_ahead_ms: int,
        coalesce_s: float,
        max_held: int = 64 * 1024 * 1024,
        advertise: Callable[[], list | None],
        apply: Callable[[list], None],
        after: Callable[[], None],
        wake_sync: Callable[[], None],
    ):
        self.replica = replica
        self.name = name
        self.clock = clock
        self.seal = seal
        self.peers = peers
        self.stats = stats
        self.max_ahead_ms = max_ahead_ms
        #: Least time between two sends of held messages (``server.bus_coalesce_ms``).
        self.coalesce_s = coalesce_s
        self._advertise = advertise
        self._apply = apply
        self._after = after
        self._wake_sync = wake_sync
        self.bus: Any = None
        #: tells this process's presence from another process using our node name
        self.instance = os.urandom(6).hex()
        #: when this process started (clock ms), in presence as ``since``: of two nodes
        #: with one name, the one that started later stops (see :meth:`_name_clash`)
        self.since = self.clock()
        #: where another node with our name is (``host:port``), once one was seen
        self.name_clash: str | None = None
        #: set if this node is the later of two with one name: the replicator stops it
        self.clash_stop = trio.Event()
        self._refusals_logged: set[tuple] = set()
        self._presence: dict | None = None
        self._presence_evt = trio.Event()
        # Outgoing messages by topic, waiting for the bus (see _send_held), also all
        # those made while the broker is away (``server.outage_backlog_mb``, see held.py)
        self._held = HeldMessages(max_held, MAX_PAYLOAD)
        self._held_evt = trio.Event()
        self._next_send = 0.0
        self._down_ms = 0  # when the bus last went down (clock ms), see link_task
        # Incoming work too large for one step (see handle and backlog_task).
        self._backlog: deque = deque()
        self._repairs: dict[tuple, Repair] = {}  # (requester, origin) -> request
        self._backlog_evt = trio.Event()

    def will(self) -> bytes:
        """The last will: this node's presence, offline (sealed)."""
        return self.seal.seal(codec.packb(encode(Presence(self.name, online=False))))

    @asynccontextmanager
    async def subscribed(self, bus) -> AsyncIterator[None]:
        """Subscribe to this node's topics on ``bus`` and use it (:meth:`attach`
        None once the bus is closed)."""
        async with (
            # handler subscriptions: messages are applied by the task that reads
            # the bus, once per burst, with no task switch in between
            bus.subscribe("presence/+", handler=self.handle),
            # QoS 0 delivery: no PUBACK per message from every receiver; loses
            # nothing QoS 1 would keep with clean sessions (distkv.bus). no_local:
            # on MQTT v5 the broker does not echo this node's own updates back to
            # it (a delivery, a wake-up and a parse per bus message for nothing);
            # on 3.1.1 it does, and _handle drops them by topic
            bus.subscribe(f"{UPDATE}/+", handler=self.handle, qos=0, no_local=True),
            bus.subscribe(f"repair/{self.name}", handler=self.handle, qos=0),
        ):
            self.bus = bus
            yield

    def attach(self, bus) -> None:
        """Use ``bus`` (None: it is gone)."""
        self.bus = bus

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
        own = f"update/{self.name}"
        # Never connected (no broker yet, or none at all): nobody to tell, and queueing
        # would only fill memory; peers learn these ticks by presence and repair.
        # After a connection was lost, messages are held (up to outage_backlog_mb) and
        # sent on reconnect: the peers apply them as they would have live, instead of
        # repairing each one (see held.py).
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
            if to is None:
                ok = held.add(own, codec.packb(m), m.get("tick"))
            else:
                ok = held.add(f"repair/{to}", codec.packb(m))
            if not ok:
                self.stats["overflow"] += 1  # peers repair it
        if held:
            # coalesce_task sends them (once the bus is connected), after this batch's
            # replies went out, and together with whatever else arrives while the
            # previous message is not yet acknowledged. See _send_held for why.
            self._held_evt.set()

    @property
    def held_bytes(self) -> int:
        """Bytes of messages waiting for the bus (after an outage: its backlog)."""
        return self._held.bytes

    @property
    def incoming(self) -> int:
        """Bus messages received and not yet applied (a burst applied in slices)."""
        return len(self._backlog)

    def _send_held(self, limit: int | None = None) -> None:
        """Publish the held messages (about ``limit`` bytes of them; None: all), in bus
        messages of up to :data:`MAX_PAYLOAD` (the chunks ``held.py`` packs: one
        message as itself, several as a msgpack array).

        Why coalesce: a bus message costs far more than a write, counted over the
        processes of a deployment: a send here (which wakes mosquitto), the broker's
        work, a wake-up of every receiving node, and PUBACKs. Published one per
        request, a sequential client on a node with a broker and a second node got
        ~20 % of a lone node's rate (2 cores). So :meth:`coalesce_task` sends only
        when the previous messages are acknowledged and, if the previous send carried
        more than one message (writes are piling up), at least
        ``server.bus_coalesce_ms`` (default 2) after it. A write after a quiet spell
        or one at a time (paced events, a writer that waits for the far node) goes out
        at once; under load messages grow instead of multiplying, and the extra delay
        is bounded by that interval plus a broker round trip.
        """
        bus = self.bus
        n = 0
        # one send for all of them, from this task (no wake-up of the bus's writer)
        with bus.writing_together():
            for topic, chunks in self._held.take(limit):
                for chunk, count in chunks:
                    n += count
                    payload = bus_payload(chunk, count)
                    if bus.pending >= bus.max_pending:
                        self.stats["overflow"] += count
                        continue
                    try:
                        bus.publish_nowait(topic, self.seal.seal(payload))
                    except DistKVError:  # BusOverflowError, BusClosedError: repair
                        self.stats["overflow"] += count
                    else:
                        self.stats["sent"] += count
        # The interval applies only once writes pile up: a lone write (ping-pong, paced
        # events) must not wait for it; a writer that never waits for anything must.
        self._next_send = trio.current_time() + (self.coalesce_s if n > 1 else 0.0)

    async def coalesce_task(self) -> None:
        """Send held messages once the bus has nothing in flight and the coalescing
        interval since the last send has passed (see :meth:`_send_held`).

        Sending from this task rather than from :meth:`flush` also means the batch's
        replies go out first: the send to the broker (and the wake-up of mosquitto it
        causes) no longer sits between a client's request and its answer.

        While the broker is away, messages stay held (bounded, see held.py); once it is
        back they go out :data:`SEND_SLICE` bytes at a time, each slice once the
        previous one is acknowledged: a 50 MB backlog neither blocks this node's
        clients nor sits in the bus twice (held and as MQTT packets)."""
        bus = self.bus
        try:
            while True:
                await self._held_evt.wait()
                self._held_evt = trio.Event()
                while self._held:
                    connects = bus.stats.connects
                    if not bus.connected:
                        await bus.wait_connected()
                    if bus.pending:  # else drain() would only cost a scheduler round
                        await bus.drain()  # (waits through a disconnect)
                    if bus.stats.connects != connects:
                        # the bus came back meanwhile: the peers may not be back yet
                        await self._wait_peers_back()
                        continue
                    wait = self._next_send - trio.current_time()
                    if wait > 0:
                        await trio.sleep(wait)
                    if self._held and bus.connected and bus.stats.connects == connects:
                        self._send_held(SEND_SLICE)
        except DistKVError:  # BusClosedError: nothing more to send
            pass
        finally:
            # shutting down: hand what is held to the bus, whose clean close sends it
            if self._held and not bus.closed:
                self._send_held()

    async def link_task(self) -> None:
        """Note when the bus goes down (see :meth:`_wait_peers_back`)."""
        bus = self.bus
        try:
            while True:
                await bus.wait_disconnected()  # (at once before the first connection)
                self._down_ms = self.clock()
                await bus.wait_connected()
        except DistKVError:  # BusClosedError
            pass

    async def _wait_peers_back(self) -> None:
        """After a reconnect: wait (at most :data:`PEERS_BACK_S`) until every peer
        that was online has been heard from again (``held.peers_back``) since the bus
        went down: nothing is heard while it is down, so what was heard since came
        after our reconnect (retained presence included)."""
        since = self._down_ms
        # members: heard from within forget_after_ms (a node that vanished an hour ago
        # without a will is not waited for on every reconnect)
        peers = self.replica.members(self.clock())
        with trio.move_on_after(PEERS_BACK_S):
            while not peers_back(peers, since):
                await trio.sleep(0.02)

    def _set_presence(self, m: dict) -> None:
        m["addr"] = self._advertise()
        m["version"] = 1
        m["instance"] = self.instance
        m["since"] = self.since
        self._presence = m
        self._presence_evt.set()

    async def presence_task(self) -> None:
        """Publish the latest presence record (retained), one at a time."""
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

    # --- incoming ----------------------------------------------------------------

    def handle(self, msgs: list) -> None:
        """Feed a burst of bus messages to the replica and apply the changes.

        A burst larger than :data:`SLICE_BYTES` (after a broker outage: the messages
        queued meanwhile, 1.6 MB in one burst took 2.8 s to apply and no client was
        answered meanwhile) goes to :meth:`backlog_task`, which applies it in slices
        with other tasks running in between; later bursts queue behind it, in order.
        """
        if self._backlog or sum(len(bm.payload or b"") for bm in msgs) > SLICE_BYTES:
            self._backlog.extend(msgs)
            self._backlog_evt.set()
            return
        self._handle(msgs)

    async def backlog_task(self) -> None:
        """Apply queued bus messages (see :meth:`handle`) and answer repair requests
        (see :meth:`_receive`) a slice at a time, yielding in between."""
        backlog = self._backlog
        while True:
            await self._backlog_evt.wait()
            self._backlog_evt = trio.Event()
            while backlog or self._repairs:
                if backlog:
                    batch = [backlog.popleft()]
                    size = len(batch[0].payload or b"")
                    while backlog and size + len(backlog[0].payload or b"") <= SLICE_BYTES:
                        bm = backlog.popleft()
                        batch.append(bm)
                        size += len(bm.payload or b"")
                    self._handle(batch)
                else:
                    key = next(iter(self._repairs))
                    msg = self._repairs.pop(key)
                    if msg.origin == self.name and self._held:
                        # what we still hold is on its way: don't scan for it
                        msg = replace(msg, ranges=not_held(msg.ranges, self._held))
                        if not msg.ranges:
                            continue
                    self.stats["repairs"] += 1
                    r = self.replica
                    for _ in r.answer_repair(msg, pause=SCAN_SLICE):
                        if len(r.outbox) >= SCAN_SLICE:
                            self._after()  # send what was found so far, a slice at a time
                        await trio.lowlevel.checkpoint()
                    self._after()
                await trio.lowlevel.checkpoint()

    def _handle(self, msgs: list) -> None:
        # Runs for every bus message a node receives: what is the same for a whole
        # burst (clock, names, counters) is looked up once.
        now = self.clock()
        name = self.name
        stats = self.stats
        unseal = self.seal.open
        max_ahead = self.max_ahead_ms
        receive = self._receive
        presence = False
        for bm in msgs:
            if bm.lost:
                stats["lost"] += bm.lost
            payload = bm.payload
            if not payload:
                continue
            topic = bm.topic
            if topic.startswith("update/"):
                sender = topic[7:]
                if sender == name:
                    continue  # our own, echoed by an MQTT 3.1.1 broker
            else:
                sender = None
            payload = unseal(payload)
            if payload is None:
                stats["unauthenticated"] += 1
                self._refused(topic, "no valid MAC (another network key, or a forger)")
                continue
            try:
                data = codec.unpackb(payload)
                batch = data if type(data) is list else [data]
                for m in batch:
                    m["type"]  # noqa: B018 - every message must have one
            except Exception as exc:  # noqa: BLE001 - a foreign publisher must not kill us
                stats["bad_messages"] += 1
                if not self.seal.active and self.seal.looks_sealed(payload):
                    self._refused(
                        topic,
                        "sealed with a network key, and this node has none: set "
                        "server.network_key, the same on every node",
                    )
                elif stats["bad_messages"] == 1:
                    logger.warning("undecodable bus message on %s: %r", topic, exc)
                continue
            for m in batch:
                why = refusal(m, now, max_ahead)
                if why is None and sender is not None and m.get("node") != sender:
                    why = f"node {m.get('node')!r} on {sender}'s topic"
                if why is not None:
                    stats["refused"] += 1
                    self._refused(topic, why)
                    continue
                presence |= receive(m, bm, now)
        if presence:
            self._wake_sync()
        self._after()

    def _name_clash(self, m: dict) -> None:
        """A live presence with our name from another process: two nodes were given
        the same name (a cloned SD card keeps its host name). Their ticks would
        collide, so the one that started later stops (:attr:`clash_stop`); the other
        says so once, in one line, with where the other one is. A peer without
        ``since`` (an older version) counts as the earlier one."""
        addr = m.get("addr")
        where = f"{addr[0]}:{addr[1]}" if isinstance(addr, list) and len(addr) == 2 else "?"
        theirs = m.get("since")
        later = not isinstance(theirs, int) or (theirs, str(m.get("instance"))) < (
            self.since,
            self.instance,
        )
        if self.name_clash is None and not later:
            logger.error(
                "another node named %r is on this network (client port %s): node names "
                "must be unique; that one stops, since it started later",
                self.name,
                where,
            )
        self.name_clash = where
        if later:
            self.clash_stop.set()

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
        if typ == UPDATE:  # nearly all of them: straight to the replica
            self._to_replica(m, bm, now)
            return False
        presence = typ == PRESENCE
        if presence:
            self.peers.arrived()
        if presence and m.get("node") == self.name:
            other = m.get("instance")
            if other is not None and other != self.instance and not bm.retained:
                self._name_clash(m)
            return False
        if presence and m.get("online", True):
            self.peers.heard(m.get("node"), m.get("addr"), retained=bm.retained)
        if typ == REPAIR and m.get("to") == self.name:
            # answered by backlog_task: it may scan the whole tree. A newer
            # request of the same requester for the same origin replaces one
            # not yet answered (it asks again after its backoff).
            try:
                req = decode(m)
            except (KeyError, TypeError, ValueError) as exc:
                self._bad(m, bm, exc)
                return presence
            self._repairs.pop((req.node, req.origin), None)
            self._repairs[req.node, req.origin] = req
            self._backlog_evt.set()
            return presence
        self._to_replica(m, bm, now)
        return presence

    def _to_replica(self, m: dict, bm, now: int) -> None:
        """Feed one message to the replica and its changes to the server."""
        try:
            changes = self.replica.receive(m, now)
        except (KeyError, TypeError, ValueError) as exc:
            self._bad(m, bm, exc)
            return
        if changes:
            self._apply(changes)

    def _bad(self, m: dict, bm, exc: Exception) -> None:
        self.stats["bad_messages"] += 1
        logger.warning("bad %s message on %s: %r", m["type"], bm.topic, exc)
