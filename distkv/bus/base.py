"""Where the bus's public names used to live; kept so that existing imports work.

New code imports from :mod:`distkv.bus` (the semantics are described there).
"""

from . import (
    DEFAULT_MAX_PENDING,
    DEFAULT_SUB_BUFFER,
    PRESENCE,
    Bus,
    BusClosedError,
    BusError,
    BusOverflowError,
    BusStats,
    Message,
    Subscription,
    backoff_delays,
    open_bus,
    topic_matches,
    validate_pattern,
    validate_topic,
)

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
