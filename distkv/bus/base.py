"""The replication bus: what nodes use to talk to each other, independent of transport.

A *bus* connects one node to the other nodes of one network. There are two transports
with the same behaviour: :mod:`distkv.bus.mqtt` (a real broker, via paho-mqtt, MQTT v5)
and :mod:`distkv.bus.memory` (an in-process broker stand-in with deterministic fault
injection). Both are opened as async context managers that own their tasks::

    async with open_bus("mqtt://127.0.0.1:1883", root="distkv", node="n1",
                        will=offline_payload) as bus:
        async with bus.subscribe("update/#") as sub:
            await bus.set_presence(presence_payload)
            await bus.publish("update/n1", payload)
            async for msg in sub:            # Message(topic, payload, retained, lost)
                ...

Payloads are opaque bytes (msgpack from the replication layer); the bus never looks
inside.

Topic layout
------------
Every topic is ``<root>/<suffix>``; the API takes and returns only the suffix. The root
(``server.root``, default ``distkv``) names the network: buses with different roots share
nothing, not even presence, even on the same broker. ``root=""`` means no prefix at all:
the MQTT gateway uses that to speak devices' own topics (``stat/plug1/POWER``), with its
own ``presence_topic`` (its online/offline status, with the will).

``<root>/presence/<node>``
    Owned by the bus. Retained, QoS 1. The node's presence record (the server puts its
    name, client address, ticks and ready flag in it). The connection's last will is the
    node's *offline* payload on the same topic (retained, QoS 1), so the broker replaces
    the record when the node dies or loses its connection without saying goodbye. A clean
    close publishes the offline payload itself, then disconnects normally (an MQTT v5
    normal DISCONNECT suppresses the will). After every reconnect the bus republishes the
    current presence, because the will may have overwritten it meanwhile. Peers discover
    each other by subscribing to ``presence/+``; no host map or DNS is needed.

Everything else is chosen by the replication layer; the bus treats it as opaque. The
recommended layout is ``update/<origin-node>`` for replicated changes (QoS 1, not
retained) and ``repair/<target-node>`` for missing-data requests and answers (QoS 1,
addressed to one node so that others need not receive them).

Quality of service, retain, sessions
------------------------------------
* **QoS 1 by default** (at least once). Duplicates are harmless because applying an update
  is idempotent. QoS 2 would cost two more round trips per message and still would not
  prevent loss: mosquitto silently drops QoS 1/2 messages to a subscriber whose queue is
  full (``max_queued_messages``, default 1000). The replication layer detects gaps by
  tick and repairs them; the bus does not pretend to be lossless. QoS 0 is available for
  best-effort traffic.
* **Subscription QoS.** The broker delivers at the lower of the publication's and the
  subscription's QoS. ``subscribe(..., qos=0)`` saves a PUBACK per delivered message
  (a send by the receiver, a wake-up of the broker). With clean sessions it loses
  nothing that QoS 1 would keep: messages in flight to a node whose connection breaks
  are dropped either way, and mosquitto bounds QoS 0 output by the same
  ``max_queued_messages``. The memory transport delivers at QoS 1 regardless.
* **Retain** only for state, i.e. presence. Retained messages reach a subscription with
  ``retained=True`` when it is made -- and again after every reconnect (resubscribing
  re-delivers them) or when a second subscription with the same pattern is made on the
  same bus (it shares the broker subscription). Treat retained messages as state, not
  events. Live messages arrive with ``retained=False`` even if published with retain.
  Publishing an empty payload with ``retain=True`` clears a retained topic (MQTT).
* **Clean sessions** (MQTT v5 clean start, session expiry 0). A persistent session would
  make the broker queue unbounded traffic for a dead node. Consequence: messages
  published while a node is disconnected are lost *for that node*; it catches up through
  repair. The node's own QoS 1 publications are not lost across a reconnect (see below).
* **Keepalive** 15 s by default: a node whose TCP connection closes is reported offline
  at once; a silently vanished one (power cut, cable) after 1.5 x keepalive.
* A bus receives its own publications if it subscribes to them (MQTT default); filter by
  topic or payload if that matters.
* Overlapping subscriptions on one bus each get their own copy (MQTT v5 subscription
  identifiers map every delivery to exactly the subscription it is for).

Ordering: messages from one bus reach a subscription in publish order, except that QoS 1
messages re-sent after a reconnect may arrive twice, and mixing QoS 0 and 1 may reorder.

Back-pressure and loss (the explicit decisions)
-----------------------------------------------
* **Outgoing.** At most ``max_pending`` messages may be accepted but not yet done (QoS 0:
  written to the socket; QoS 1: acknowledged by the broker), including messages queued
  while disconnected. :meth:`Bus.publish` waits for room; :meth:`Bus.publish_nowait` never
  blocks and raises :class:`BusOverflowError` instead (the hot path decides: the
  replication layer can count it and rely on repair).
* **While disconnected** QoS 1 messages are queued (within ``max_pending``) and sent in
  order after reconnecting; QoS 0 messages are discarded and counted
  (``stats.dropped_offline``), like MQTT itself would. Nothing blocks: the server keeps
  serving while the bus retries with exponential backoff (0.1 s doubling to 1 s).
* **Incoming.** Each subscription has a bounded buffer. The reader never blocks on a slow
  consumer (that would stall presence and keepalive for every subscription); a message
  that does not fit is dropped and counted (``Subscription.dropped``,
  ``stats.dropped_full``), and the next message delivered on that subscription carries
  ``lost=N``, the number dropped just before it. This is the same failure mode as the
  broker's own queue limit, so one repair mechanism covers both.
"""

from __future__ import annotations

import abc
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import trio

from distkv.exceptions import ConfigError, DistKVError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SUB_BUFFER",
    "PRESENCE",
    "Bus",
    "BusClosedError",
    "BusError",
    "BusOverflowError",
    "BusStats",
    "Message",
    "Subscription",
    "backoff_delays",
    "open_bus",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]

#: Topic suffix prefix of presence records: ``<root>/presence/<node>``.
PRESENCE = "presence"
#: Default bound on outgoing messages in flight plus queued (see module docstring).
DEFAULT_MAX_PENDING = 10_000
#: Default buffer size of one subscription.
DEFAULT_SUB_BUFFER = 10_000
# MQTT packet ids are 16 bit; the in-flight table must never need more.
_MAX_PENDING_LIMIT = 60_000


class BusError(DistKVError):
    """A bus operation failed (e.g. the broker refused a subscription)."""

    code = "bus"


class BusOverflowError(BusError):
    """``publish_nowait`` found the outgoing buffer full (``max_pending`` reached)."""

    code = "bus_overflow"


class BusClosedError(BusError):
    """The bus was closed (or crashed) and cannot be used any more."""

    code = "bus_closed"


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message.

    ``topic`` is the suffix below the root. ``retained`` is true for messages the broker
    replays from its retained store when a subscription is made. ``lost`` counts the
    messages this subscription dropped (buffer full) immediately before this one.
    """

    topic: str
    payload: bytes
    retained: bool = False
    lost: int = 0


@dataclass(slots=True)
class BusStats:
    """Counters, so that no loss is silent; the server exports them."""

    published: int = 0  # messages handed to the transport
    received: int = 0  # deliveries from the transport (before per-subscription buffering)
    dropped_offline: int = 0  # QoS 0 discarded while disconnected (or unsent at link loss)
    dropped_full: int = 0  # deliveries dropped because a subscription buffer was full
    publish_errors: int = 0  # publications the broker refused (negative PUBACK)
    connects: int = 0  # times the bus became connected
    disconnects: int = 0  # times it lost the connection
    connect_failures: int = 0  # failed connection attempts


class _Out(NamedTuple):
    seq: int
    topic: str  # full topic
    payload: bytes
    qos: int
    retain: bool


# ----------------------------------------------------------------------------- topics


def _check_common(s: str, what: str) -> None:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    if not s:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in s:
        raise ValueError(f"{what} must not contain NUL: {s!r}")
    if s.startswith("/") or s.endswith("/"):
        raise ValueError(f"{what} must not start or end with '/': {s!r}")


def validate_topic(topic: str, what: str = "topic") -> str:
    """Check a concrete topic suffix (no wildcards, no empty ends); return it."""
    _check_common(topic, what)
    if "+" in topic or "#" in topic:
        raise ValueError(f"{what} must not contain wildcards: {topic!r}")
    return topic


def validate_pattern(pattern: str) -> str:
    """Check a subscription pattern: ``+`` and ``#`` only as whole levels, ``#`` last."""
    _check_common(pattern, "pattern")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and i != len(levels) - 1:
                raise ValueError(f"'#' must be the last level: {pattern!r}")
        elif "+" in level or "#" in level:
            raise ValueError(f"wildcards must fill a whole level: {pattern!r}")
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching: ``+`` is one level, ``#`` the rest (including none:
    ``a/#`` matches ``a``)."""
    p = pattern.split("/")
    t = topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(p) == len(t)


def backoff_delays(minimum: float = 0.1, maximum: float = 5.0) -> Iterator[float]:
    """Reconnect delays: ``minimum``, doubling, capped at ``maximum``, forever.

    No jitter: nodes reconnect to one broker, and a restarted mosquitto accepts a few
    dozen simultaneous connects without trouble; determinism makes tests simpler.
    """
    delay = minimum
    while True:
        yield delay
        delay = min(delay * 2, maximum)


# ------------------------------------------------------------------------ subscriptions


class Subscription:
    """A bounded stream of :class:`Message` for one pattern; see :meth:`Bus.subscribe`.

    Use as ``async with bus.subscribe(pattern) as sub: async for msg in sub: ...``.
    Entering waits until the broker confirmed the subscription (if connected; otherwise it
    is made on connect), so messages published afterwards are received. Iteration ends
    when the bus closes.
    """

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        buffer: int,
        handler: Callable[[list[Message]], None] | None = None,
        qos: int = 1,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.qos = qos
        self.bus = bus
        self._handler = handler
        self._pending: list[Message] = []
        self.pattern = validate_pattern(pattern)
        self.buffer = buffer
        #: Messages dropped on this subscription because its buffer was full.
        self.dropped = 0
        self._lost = 0
        self._send, self._recv = trio.open_memory_channel[Message](buffer)
        self._active = False

    async def __aenter__(self) -> Subscription:
        if self._active:
            raise RuntimeError("subscription already entered")
        self._active = True
        try:
            await self.bus._add_subscription(self)
        except BaseException:
            self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._active:
            self._active = False
            self.bus._remove_subscription(self)
        self._send.close()
        self._recv.close()

    def _end(self) -> None:
        """The bus is gone: let the consumer drain what is buffered, then stop."""
        self._send.close()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> Message:
        """The next message; raises :class:`BusClosedError` once the bus has closed."""
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise BusClosedError("bus closed") from None

    def receive_nowait(self) -> Message:
        """The next buffered message without waiting (raises ``trio.WouldBlock`` if there
        is none): lets a consumer handle a burst in one go instead of one per scheduler
        round."""
        try:
            return self._recv.receive_nowait()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise BusClosedError("bus closed") from None

    def _offer(self, msg: Message) -> None:
        if self._handler is not None:
            self._pending.append(msg)
            if not self.bus._bursting:
                self.bus._defer_burst_end()
            return
        if self._lost:
            msg = replace(msg, lost=self._lost)
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            if not self.dropped:
                logger.warning(
                    "bus %s: subscription %r is full (%d); dropping (repair will catch up)",
                    self.bus.node,
                    self.pattern,
                    self.buffer,
                )
            self.dropped += 1
            self._lost += 1
            self.bus.stats.dropped_full += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        else:
            self._lost = 0

    def _run_handler(self) -> None:
        msgs, self._pending = self._pending, []
        if not msgs or not self._active:
            return
        try:
            self._handler(msgs)
        except Exception:  # noqa: BLE001 - a consumer bug must not kill the bus reader
            logger.exception("bus %s: handler for %r failed", self.bus.node, self.pattern)


class _Group:
    """All local subscriptions with one pattern share one broker subscription
    (MQTT allows only one per filter and connection)."""

    __slots__ = ("pattern", "sid", "subs", "epoch")

    def __init__(self, pattern: str, sid: int) -> None:
        self.pattern = pattern
        self.sid = sid
        self.subs: list[Subscription] = []
        self.epoch = -1  # link epoch in which the broker subscription was made

    @property
    def qos(self) -> int:
        """The broker subscription's QoS: the highest any local subscription asked for."""
        return max((s.qos for s in self.subs), default=1)


# ------------------------------------------------------------------------------ the bus


class Bus(abc.ABC):
    """Common behaviour of all transports; see the module docstring for the semantics.

    Subclasses provide the transport hooks (``_transport_*``) and call ``_dispatch`` for
    incoming messages, ``_link_restored`` once a (re)connection is ready and
    ``_link_lost`` when it ends.
    """

    def __init__(
        self,
        root: str,
        node: str,
        *,
        will: bytes | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        presence_topic: str | None = None,
    ) -> None:
        # root "": raw topics, no prefix (gateways speak devices' own topic layouts)
        if root != "":
            validate_topic(root, "root")
        validate_topic(node, "node")
        if "/" in node:
            raise ValueError(f"node name must be one topic level: {node!r}")
        if not 1 <= max_pending <= _MAX_PENDING_LIMIT:
            raise ValueError(f"max_pending must be in 1..{_MAX_PENDING_LIMIT}")
        if will is not None and not isinstance(will, bytes | bytearray):
            raise TypeError("will must be bytes")
        self.root = root
        self.node = node
        self.will = bytes(will) if will is not None else None
        self.max_pending = max_pending
        self.stats = BusStats()
        self._prefix = root + "/" if root else ""
        self._presence_topic = (
            validate_topic(presence_topic, "presence_topic")
            if presence_topic is not None
            else f"{PRESENCE}/{node}"
        )
        self._groups: dict[str, _Group] = {}
        # True while the transport's reader is inside a burst: handler subscriptions
        # collect messages and get them at :meth:`_end_burst`.
        self._bursting = False
        self._by_sid: dict[int, _Group] = {}
        self._next_sid = 1
        self._offline: deque[_Out] = deque()
        self._seq = 0
        self._epoch = 0
        self._link_up = False
        self._connected = False
        self._closed = False
        self._presence: bytes | None = None
        self._connected_evt = trio.Event()
        self._disconnected_evt = trio.Event()
        self._disconnected_evt.set()
        self._progress = trio.Event()
        self._progress_waiting = False

    # --------------------------------------------------------------- public: state

    @property
    def connected(self) -> bool:
        """True while the bus has a working connection (subscriptions re-established)."""
        return self._connected

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def presence_topic(self) -> str:
        """This node's presence topic suffix, ``presence/<node>`` unless the bus was
        opened with another ``presence_topic`` (a gateway's status topic)."""
        return self._presence_topic

    @property
    def pending(self) -> int:
        """Outgoing messages accepted but not yet done (counted against ``max_pending``)."""
        return len(self._offline) + self._inflight_count()

    async def wait_connected(self) -> None:
        """Return once connected (immediately if already). Raises if the bus closes."""
        await self._connected_evt.wait()
        self._check_open()

    async def wait_disconnected(self) -> None:
        """Return once the connection is lost (immediately if not connected)."""
        await self._disconnected_evt.wait()

    # --------------------------------------------------------------- public: publish

    def full_topic(self, topic: str) -> str:
        """The broker-level topic of a suffix (``<root>/<suffix>``)."""
        return self._prefix + topic

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Hand a message to the transport without blocking.

        Raises :class:`BusOverflowError` if ``max_pending`` messages are already pending.
        While disconnected, QoS 1 is queued and QoS 0 is discarded (counted).
        """
        self._check_open()
        validate_topic(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not isinstance(payload, bytes | bytearray):
            raise TypeError("payload must be bytes")
        full = self._prefix + topic
        if not self._link_up or self._offline:
            if qos == 0:
                self.stats.dropped_offline += 1
                return
            if self.pending >= self.max_pending:
                raise BusOverflowError(f"bus {self.node}: {self.max_pending} messages pending")
            self._seq += 1
            self._offline.append(_Out(self._seq, full, bytes(payload), qos, retain))
            return
        if self._inflight_count() >= self.max_pending:
            raise BusOverflowError(f"bus {self.node}: {self.max_pending} messages pending")
        self._seq += 1
        self._transport_send(_Out(self._seq, full, bytes(payload), qos, retain))
        self.stats.published += 1

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Hand a message to the transport, waiting while ``max_pending`` is reached.

        Returns when the message is accepted, not when it is delivered (use
        :meth:`drain` for that). Does not wait for a connection: see the module docstring.
        """
        while True:
            try:
                self.publish_nowait(topic, payload, qos=qos, retain=retain)
            except BusOverflowError:
                await self._wait_progress()
            else:
                await trio.lowlevel.checkpoint()
                return

    async def drain(self) -> None:
        """Wait until everything published before this call is done (QoS 1: acknowledged
        by the broker; QoS 0: written). Waits through disconnects; bound it with
        ``trio.fail_after`` if that matters."""
        target = self._seq
        while True:
            self._check_open()
            oldest = self._oldest_pending_seq()
            if oldest is None or oldest > target:
                await trio.lowlevel.checkpoint()
                return
            await self._wait_progress()

    async def set_presence(self, payload: bytes) -> None:
        """Publish this node's retained presence record (and remember it, so that it is
        republished after every reconnect). While disconnected it is only remembered."""
        self._check_open()
        self._presence = bytes(payload)
        if self._link_up and not self._offline:
            await self.publish(self.presence_topic, self._presence, qos=1, retain=True)
        else:
            await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------ public: subscribe

    def subscribe(
        self,
        pattern: str,
        *,
        buffer: int = DEFAULT_SUB_BUFFER,
        handler: Callable[[list[Message]], None] | None = None,
        qos: int = 1,
    ) -> Subscription:
        """A subscription to ``<root>/<pattern>`` (MQTT wildcards ``+``/``#``); use it as
        an async context manager and async iterator. ``buffer`` bounds its memory; see the
        module docstring for what happens when it is full.

        With ``handler``, messages are not queued: ``handler(messages)`` is called
        synchronously on the trio thread by the task that reads the transport, once per
        burst of received data. That saves a task switch per burst on the replication
        hot path; the handler must not block (and must not raise: errors are logged).

        ``qos``: the delivery QoS asked of the broker (see the module docstring); one
        broker subscription serves all local ones with the same pattern, at the highest
        QoS any of them asked for."""
        self._check_open()
        return Subscription(self, pattern, buffer, handler, qos)

    def _defer_burst_end(self) -> None:
        """A message arrived outside a reader burst (e.g. the memory transport delivers
        inside the publisher's call): collect until the run loop is free, then run the
        handlers, so a handler never runs re-entrantly inside somebody else's publish."""
        self._bursting = True
        trio.lowlevel.current_trio_token().run_sync_soon(self._end_burst)

    def _end_burst(self) -> None:
        """The transport's reader finished a burst: run the handlers of subscriptions."""
        self._bursting = False
        for group in list(self._groups.values()):
            for sub in list(group.subs):
                if sub._pending:
                    sub._run_handler()

    def write_now(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Push out what :meth:`publish_nowait` queued from the calling task, if the
        transport can do so without blocking (saves waking the writer task on the
        replication hot path). The default does nothing."""

    # ------------------------------------------------------- public: fault injection

    @abc.abstractmethod
    def drop_connection(self) -> None:
        """Fault injection: cut the connection abruptly (the broker publishes the will);
        the bus then reconnects as it would after a network failure."""

    @abc.abstractmethod
    async def crash(self) -> None:
        """Fault injection: die without saying goodbye (the broker publishes the will)
        and stop for good. The bus is closed afterwards."""

    # ----------------------------------------------------------- transport hooks

    @abc.abstractmethod
    def _transport_send(self, out: _Out) -> None:
        """Send now (link is up). Must not block."""

    @abc.abstractmethod
    async def _transport_subscribe(self, groups: list[_Group]) -> None:
        """Make broker subscriptions (link is up) and wait for the broker's answer."""

    @abc.abstractmethod
    def _transport_unsubscribe(self, group: _Group) -> None:
        """Drop a broker subscription (link is up)."""

    def _inflight_count(self) -> int:
        return 0

    def _oldest_inflight_seq(self) -> int | None:
        return None

    # --------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError(f"bus {self.node} is closed")

    def _oldest_pending_seq(self) -> int | None:
        a = self._oldest_inflight_seq()
        b = self._offline[0].seq if self._offline else None
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b)

    async def _wait_progress(self) -> None:
        self._progress_waiting = True
        await self._progress.wait()

    def _notify_progress(self) -> None:
        if self._progress_waiting:
            self._progress_waiting = False
            self._progress.set()
            self._progress = trio.Event()

    def _set_connected(self, up: bool) -> None:
        if up == self._connected:
            return
        self._connected = up
        if up:
            self.stats.connects += 1
            self._connected_evt.set()
            self._disconnected_evt = trio.Event()
        else:
            self.stats.disconnects += 1
            self._disconnected_evt.set()
            self._connected_evt = trio.Event()

    async def _add_subscription(self, sub: Subscription) -> None:
        self._check_open()
        group = self._groups.get(sub.pattern)
        if group is None:
            group = _Group(sub.pattern, self._next_sid)
            self._next_sid += 1
            self._groups[sub.pattern] = group
            self._by_sid[group.sid] = group
        group.subs.append(sub)
        if self._link_up:
            # Also for an existing group: re-subscribing makes the broker send the
            # retained messages, which the new subscriber expects.
            await self._transport_subscribe([group])
        else:
            await trio.lowlevel.checkpoint()

    def _remove_subscription(self, sub: Subscription) -> None:
        group = self._groups.get(sub.pattern)
        if group is None or sub not in group.subs:
            return
        group.subs.remove(sub)
        if not group.subs:
            del self._groups[group.pattern]
            del self._by_sid[group.sid]
            if self._link_up and not self._closed:
                self._transport_unsubscribe(group)

    async def _resubscribe_all(self) -> None:
        """After (re)connecting: make every subscription, including any added while we
        were waiting for the broker's answers."""
        while True:
            todo = [g for g in self._groups.values() if g.epoch != self._epoch]
            if not todo:
                return
            await self._transport_subscribe(todo)
            if any(g.epoch != self._epoch for g in todo):
                # the link broke meanwhile (the transport gave up on these): the next
                # connection redoes them. Looping here would spin without ever yielding.
                return

    def _dispatch(
        self, full_topic: str, payload: bytes, retained: bool, sids: list[int] | None
    ) -> None:
        """Deliver one incoming message to the subscriptions it is meant for."""
        if not full_topic.startswith(self._prefix):
            return
        self.stats.received += 1
        msg = Message(full_topic[len(self._prefix) :], payload, retained)
        if sids:
            for sid in sids:
                group = self._by_sid.get(sid)
                if group is not None:
                    for sub in group.subs:
                        sub._offer(msg)
        else:
            # Transport without subscription ids: match locally.
            for group in self._groups.values():
                if topic_matches(group.pattern, msg.topic):
                    for sub in group.subs:
                        sub._offer(msg)

    def _link_restored(self) -> None:
        """Subscriptions are in place: republish presence, flush the offline queue in
        order, and report the connection. Synchronous, so no publish can interleave."""
        if self._presence is not None:
            self._seq += 1
            self._transport_send(
                _Out(self._seq, self._prefix + self.presence_topic, self._presence, 1, True)
            )
            self.stats.published += 1
        while self._offline:
            self._transport_send(self._offline.popleft())
            self.stats.published += 1
        self._link_up = True
        self._set_connected(True)
        self._notify_progress()

    def _link_lost(self) -> None:
        self._link_up = False
        self._epoch += 1
        self._set_connected(False)
        self._notify_progress()

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._link_lost()
        self._closed = True
        if self._offline:
            logger.warning(
                "bus %s closed with %d unsent queued messages", self.node, len(self._offline)
            )
            self._offline.clear()
        for group in list(self._groups.values()):
            for sub in group.subs:
                sub._end()
        # wake anybody waiting for a state change; they re-check and see "closed"
        self._connected_evt.set()
        self._disconnected_evt.set()
        self._progress_waiting = True
        self._notify_progress()


def open_bus(
    target: str | Mapping[str, Any] | Any, root: str, node: str, **kw: Any
) -> AbstractAsyncContextManager[Bus]:
    """Open a bus from a URI (``mqtt://[user:pass@]host[:port]``), a config mapping
    (``{"uri": ..., <open_mqtt_bus keyword>: ...}``) or a
    :class:`~distkv.bus.memory.MemoryNetwork`."""
    if isinstance(target, Mapping):
        cfg = dict(target)
        try:
            uri = cfg.pop("uri")
        except KeyError:
            raise ConfigError("bus config needs a 'uri'") from None
        cfg.update(kw)
        return open_bus(uri, root, node, **cfg)
    if isinstance(target, str):
        scheme = urlsplit(target).scheme
        if scheme == "mqtt":
            from distkv.bus.mqtt import open_mqtt_bus  # paho only when MQTT is used

            return open_mqtt_bus(target, root, node, **kw)
        raise ConfigError(f"unsupported bus URI {target!r} (expected mqtt://host:port)")
    open_ = getattr(target, "open_bus", None)
    if open_ is None:
        raise ConfigError(f"cannot open a bus on {target!r}")
    return open_(root, node, **kw)
