"""Subscriptions: the two ways a bus hands messages to its consumers.

* **Queued** (the default): a bounded channel the consumer iterates; a full buffer
  drops and counts (the next message carries ``lost``), so the transport's reader never
  waits for a slow consumer.
* **Handler**: ``handler(messages)`` is called synchronously once per burst of
  received data by the task that reads the transport (no task switch on the hot path).

All local subscriptions with one pattern share one broker subscription
(:class:`SubscriptionGroup`): MQTT allows one per filter and connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from .topics import validate_pattern
from .types import BusClosedError, Message

if TYPE_CHECKING:
    from .bus import Bus

logger = logging.getLogger("distkv.bus")

__all__ = ["Subscription", "SubscriptionGroup"]


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
        no_local: bool = False,
    ) -> None:
        self.no_local = no_local
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
            if not self._pending:
                self.bus._handlers_due.append(self)
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


class SubscriptionGroup:
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

    @property
    def no_local(self) -> bool:
        return all(s.no_local for s in self.subs)
