"""The bus's value types, counters, limits and errors (no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from distkv.exceptions import DistKVError

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SUB_BUFFER",
    "MAX_PENDING_LIMIT",
    "BusClosedError",
    "BusError",
    "BusOverflowError",
    "BusStats",
    "Message",
    "Outgoing",
]

#: Default bound on outgoing messages in flight plus queued (see :mod:`distkv.bus`).
DEFAULT_MAX_PENDING = 10_000
#: Default buffer size of one subscription.
DEFAULT_SUB_BUFFER = 10_000
#: MQTT packet ids are 16 bit; the in-flight table must never need more.
MAX_PENDING_LIMIT = 60_000


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


class Outgoing(NamedTuple):
    """One publication on its way to a transport: ``seq`` orders everything a bus
    accepted (:meth:`Bus.drain <distkv.bus.bus.Bus.drain>` waits by it), ``topic`` is
    the full broker-level topic."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
