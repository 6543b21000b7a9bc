"""The bus state machine every transport shares: link state, the offline queue,
back-pressure on publish, subscription groups and their (re)subscription, dispatch of
incoming messages. The semantics are in :mod:`distkv.bus`; a transport subclasses
:class:`Bus` and provides the ``_transport_*`` hooks."""

from __future__ import annotations

import abc
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

from .subscription import Subscription, SubscriptionGroup
from .topics import PRESENCE, topic_matches, validate_topic
from .types import (
    DEFAULT_MAX_PENDING,
    DEFAULT_SUB_BUFFER,
    MAX_PENDING_LIMIT,
    BusClosedError,
    BusOverflowError,
    BusStats,
    Message,
    Outgoing,
)

logger = logging.getLogger("distkv.bus")

# Topics whose matching subscription groups are remembered (see Bus._dispatch).
_MATCH_CACHE = 1024

__all__ = ["Bus"]


class Bus(abc.ABC):
    """Common behaviour of all transports; see :mod:`distkv.bus` for the semantics.

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
        if not 1 <= max_pending <= MAX_PENDING_LIMIT:
            raise ValueError(f"max_pending must be in 1..{MAX_PENDING_LIMIT}")
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
        self._groups: dict[str, SubscriptionGroup] = {}
        # True while the transport's reader is inside a burst: handler subscriptions
        # collect messages and get them at :meth:`_end_burst`.
        self._bursting = False
        self._together = 0  # writing_together() depth
        # handler subscriptions that got messages in this burst, in order of arrival:
        # the burst's end runs just these (a gateway has hundreds of subscriptions)
        self._handlers_due: list[Subscription] = []
        self._by_sid: dict[int, SubscriptionGroup] = {}
        # topic -> groups whose pattern matches it (transports without subscription ids)
        self._matches: dict[str, list[SubscriptionGroup]] = {}
        self._next_sid = 1
        self._offline: deque[Outgoing] = deque()
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
            self._offline.append(Outgoing(self._seq, full, bytes(payload), qos, retain))
            return
        if self._inflight_count() >= self.max_pending:
            raise BusOverflowError(f"bus {self.node}: {self.max_pending} messages pending")
        self._seq += 1
        self._transport_send(Outgoing(self._seq, full, bytes(payload), qos, retain))
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
        no_local: bool = False,
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
        return Subscription(self, pattern, buffer, handler, qos, no_local)

    def _defer_burst_end(self) -> None:
        """A message arrived outside a reader burst (e.g. the memory transport delivers
        inside the publisher's call): collect until the run loop is free, then run the
        handlers, so a handler never runs re-entrantly inside somebody else's publish."""
        self._bursting = True
        trio.lowlevel.current_trio_token().run_sync_soon(self._end_burst)

    def _end_burst(self) -> None:
        """The transport's reader finished a burst: run the handlers of subscriptions."""
        self._bursting = False
        due, self._handlers_due = self._handlers_due, []
        for sub in due:
            sub._run_handler()

    def write_now(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Push out what :meth:`publish_nowait` queued from the calling task, if the
        transport can do so without blocking (saves waking the writer task on the
        replication hot path). The default does nothing."""

    @contextmanager
    def writing_together(self) -> Iterator[None]:
        """Publish several messages, then write them out at once from the calling task.

        Inside, :meth:`publish_nowait` only queues; on exit :meth:`write_now` pushes
        everything out (kernel-first: one send, no wake-up of the transport's writer
        task, which is woken only for what the socket does not take). Why: on the
        replication hot path the writer task's wake-up after every bus message cost a
        task switch although the caller was about to write anyway."""
        self._together += 1
        try:
            yield
        finally:
            self._together -= 1
            if not self._together:
                self.write_now()

    # ----------------------------------------------------------- transport hooks

    @abc.abstractmethod
    def _transport_send(self, out: Outgoing) -> None:
        """Send now (link is up). Must not block."""

    @abc.abstractmethod
    async def _transport_subscribe(self, groups: list[SubscriptionGroup]) -> None:
        """Make broker subscriptions (link is up) and wait for the broker's answer."""

    @abc.abstractmethod
    def _transport_unsubscribe(self, group: SubscriptionGroup) -> None:
        """Drop a broker subscription (link is up)."""

    @abc.abstractmethod
    def _transport_cut(self) -> None:
        """Cut the connection abruptly, as a network failure would (the broker
        publishes the will); the bus then reconnects. For fault injection
        (:class:`distkv.testing.busfaults.FaultInjection`)."""

    @abc.abstractmethod
    async def _transport_crash(self) -> None:
        """Die without saying goodbye (the broker publishes the will) and stop for
        good. For fault injection."""

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
            group = SubscriptionGroup(sub.pattern, self._next_sid)
            self._next_sid += 1
            self._groups[sub.pattern] = group
            self._by_sid[group.sid] = group
            self._matches.clear()
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
            self._matches.clear()
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
            # Transport without subscription ids: match locally. Topics repeat (one
            # per peer), so the matching groups are remembered per topic.
            groups = self._matches.get(msg.topic)
            if groups is None:
                if len(self._matches) >= _MATCH_CACHE:
                    self._matches.clear()
                groups = [g for g in self._groups.values() if topic_matches(g.pattern, msg.topic)]
                self._matches[msg.topic] = groups
            for group in groups:
                for sub in group.subs:
                    sub._offer(msg)

    def _link_restored(self) -> None:
        """Subscriptions are in place: republish presence, flush the offline queue in
        order, and report the connection. Synchronous, so no publish can interleave."""
        if self._presence is not None:
            self._seq += 1
            self._transport_send(
                Outgoing(self._seq, self._prefix + self.presence_topic, self._presence, 1, True)
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
