"""Reconnect delays of a bus transport."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["backoff_delays"]


def backoff_delays(minimum: float = 0.1, maximum: float = 5.0) -> Iterator[float]:
    """Reconnect delays: ``minimum``, doubling, capped at ``maximum``, forever.

    No jitter: nodes reconnect to one broker, and a restarted mosquitto accepts a few
    dozen simultaneous connects without trouble; determinism makes tests simpler.
    """
    delay = minimum
    while True:
        yield delay
        delay = min(delay * 2, maximum)
