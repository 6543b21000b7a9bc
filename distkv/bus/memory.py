"""In-process bus: an MQTT broker stand-in for tests and simulated clusters.

:class:`MemoryNetwork` plays the broker. It behaves like mosquitto as far as the bus
contract goes (see :mod:`distkv.bus`): retained messages replayed to new
subscriptions, one copy per matching subscription, ``+``/``#`` wildcards, the last will
published when a connection dies abnormally, nothing queued for disconnected nodes
(clean sessions), and a broker restart that forgets retained messages (``persistence
false``).

Delivery is synchronous and single-threaded, so a run is fully deterministic. Faults
are injected explicitly and deterministically:

* ``drop`` -- probability that one live delivery (message x subscription) is lost, drawn
  from ``random.Random(seed)`` in a fixed order; like mosquitto dropping messages for a
  slow subscriber. Retained replays on subscribe are never dropped.
* :meth:`MemoryNetwork.partition` / :meth:`~MemoryNetwork.heal` -- cut nodes off the
  broker (their wills fire at once, as after keepalive expiry) and reconnect them.
* :meth:`MemoryNetwork.stop_broker` / :meth:`~MemoryNetwork.start_broker` -- a broker
  outage: every bus disconnects (no wills: the broker is gone), retained state is lost.
* :meth:`MemoryBus.drop_connection` / :meth:`MemoryBus.crash` -- as on every bus.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from distkv.testing.busfaults import FaultInjection

from .bus import Bus
from .subscription import SubscriptionGroup
from .topics import topic_matches
from .types import DEFAULT_MAX_PENDING, Outgoing

logger = logging.getLogger(__name__)

__all__ = ["MemoryBus", "MemoryNetwork"]


class MemoryNetwork:
    """The shared "broker" of any number of :class:`MemoryBus` (any roots)."""

    def __init__(self, *, seed: int = 0, drop: float = 0.0) -> None:
        if not 0.0 <= drop <= 1.0:
            raise ValueError("drop must be a probability")
        self.drop = drop
        self._rng = random.Random(seed)
        self._retained: dict[str, bytes] = {}
        self._linked: dict[int, MemoryBus] = {}  # id(bus) -> bus, connection order
        self._buses: dict[int, MemoryBus] = {}  # every open bus
        self._partitioned: set[str] = set()
        self._broker_up = True
        #: deliveries lost to the ``drop`` probability
        self.dropped = 0

    async def __aenter__(self) -> MemoryNetwork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bus in list(self._buses.values()):
            bus._shutdown(clean=False)

    @property
    def broker_up(self) -> bool:
        return self._broker_up

    def retained(self, full_topic: str) -> bytes | None:
        """The broker's retained payload for a full topic (for assertions)."""
        return self._retained.get(full_topic)

    @asynccontextmanager
    async def open_bus(
        self,
        root: str,
        node: str,
        *,
        will: bytes | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> AsyncIterator[MemoryBus]:
        """Open a bus for ``node`` in network ``root``; closing it says goodbye cleanly
        (the offline payload is published, no will)."""
        bus = MemoryBus(self, root, node, will=will, max_pending=max_pending)
        self._buses[id(bus)] = bus
        self._try_link(bus)
        try:
            await trio.lowlevel.checkpoint()
            yield bus
        finally:
            bus._shutdown(clean=True)

    # ------------------------------------------------------------ fault injection

    def partition(self, *nodes: str) -> None:
        """Cut these nodes (all their buses, any root) off the broker until healed."""
        self._partitioned.update(nodes)
        for bus in list(self._linked.values()):
            if bus.node in nodes:
                self._unlink(bus, will=True)

    def heal(self, *nodes: str) -> None:
        """Reconnect partitioned nodes (all of them if none are named)."""
        if nodes:
            self._partitioned.difference_update(nodes)
        else:
            self._partitioned.clear()
        self._link_all()

    def stop_broker(self) -> None:
        """Broker outage: every bus disconnects, no wills, retained state is forgotten."""
        self._broker_up = False
        for bus in list(self._linked.values()):
            self._unlink(bus, will=False)
        self._retained.clear()

    def start_broker(self) -> None:
        """End the outage; buses reconnect (in the order they were opened)."""
        self._broker_up = True
        self._link_all()

    # ------------------------------------------------------------------ broker

    def _link_all(self) -> None:
        for bus in list(self._buses.values()):
            self._try_link(bus)

    def _try_link(self, bus: MemoryBus) -> None:
        if (
            self._broker_up
            and not bus._closed
            and bus.node not in self._partitioned
            and id(bus) not in self._linked
        ):
            self._linked[id(bus)] = bus
            bus._on_link()

    def _unlink(self, bus: MemoryBus, *, will: bool) -> None:
        if self._linked.pop(id(bus), None) is None:
            return
        bus._broker_subs.clear()
        bus._link_lost()
        if will and bus.will is not None:
            self._route(bus.full_topic(bus.presence_topic), bus.will, True)

    def _subscribe(self, bus: MemoryBus, group: SubscriptionGroup) -> None:
        full = bus.full_topic(group.pattern)
        bus._broker_subs[full] = (group.sid, group.no_local)
        for topic, payload in list(self._retained.items()):
            if topic_matches(full, topic):
                bus._dispatch(topic, payload, True, [group.sid])

    def _route(
        self, topic: str, payload: bytes, retain: bool, sender: MemoryBus | None = None
    ) -> None:
        if retain:
            if payload:
                self._retained[topic] = payload
            else:
                self._retained.pop(topic, None)
        for bus in list(self._linked.values()):
            for pattern, (sid, no_local) in list(bus._broker_subs.items()):
                if not topic_matches(pattern, topic) or (no_local and bus is sender):
                    continue
                if self.drop and self._rng.random() < self.drop:
                    self.dropped += 1
                    continue
                bus._dispatch(topic, payload, False, [sid])


class MemoryBus(FaultInjection, Bus):
    """A bus on a :class:`MemoryNetwork`; open it with :meth:`MemoryNetwork.open_bus`."""

    def __init__(
        self,
        net: MemoryNetwork,
        root: str,
        node: str,
        *,
        will: bytes | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__(root, node, will=will, max_pending=max_pending)
        self.net = net
        # full pattern -> (subscription id, no local)
        self._broker_subs: dict[str, tuple[int, bool]] = {}

    def _on_link(self) -> None:
        for group in self._groups.values():
            self.net._subscribe(self, group)
            group.epoch = self._epoch
        self._link_restored()

    def _transport_send(self, out: Outgoing) -> None:
        self.net._route(out.topic, out.payload, out.retain, self)

    async def _transport_subscribe(self, groups: list[SubscriptionGroup]) -> None:
        for group in groups:
            if self._link_up:
                self.net._subscribe(self, group)
                group.epoch = self._epoch
        await trio.lowlevel.checkpoint()

    def _transport_unsubscribe(self, group: SubscriptionGroup) -> None:
        self._broker_subs.pop(self.full_topic(group.pattern), None)

    def _transport_cut(self) -> None:
        self.net._unlink(self, will=True)
        self.net._try_link(self)

    async def _transport_crash(self) -> None:
        self._shutdown(clean=False)
        await trio.lowlevel.checkpoint()

    def _shutdown(self, *, clean: bool) -> None:
        if self._closed:
            return
        if clean and self._link_up and self.will is not None:
            self.net._route(self.full_topic(self.presence_topic), self.will, True)
        self.net._unlink(self, will=not clean)
        self.net._buses.pop(id(self), None)
        self._mark_closed()
