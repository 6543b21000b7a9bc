"""What a gateway counts, for an operator: messages in and out, tree writes, commands,
dropped and refused payloads, errors, devices online.

Why: a gateway is where a house's devices meet the tree, and "is anything arriving?",
"are commands going out?", "are payloads being thrown away?" are the first questions
when something does not switch. :class:`GatewayCounters` is a plain object the gateway
increments (a dict update; no I/O, no clock). Who reads it depends on how the gateway
runs:

- inside the node (``server.services``): the service wiring registers it with the
  node's metrics (:meth:`distkv.server.metrics.Metrics.add_gateway`) and ``/metrics``
  shows it with a ``gateway`` label;
- as a process of its own: :func:`publish_counters` writes it to the tree entry
  ``.distkv gateway NAME`` at most once per :data:`PUBLISH_INTERVAL` and only when a
  count changed (:class:`PublishPlan` decides), so an idle gateway writes nothing and
  a busy one writes once a minute (SD-card wear).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: counter name -> help text (every gateway has all of them: a fixed label set)
COUNTERS: dict[str, str] = {
    "messages_in": "messages received from devices (MQTT messages, 1-wire readings, GPIO edges)",
    "messages_out": "messages sent to devices or MQTT (publications, 1-wire and GPIO writes)",
    "writes": "tree writes (and deletes) done",
    "write_errors": "tree writes the node refused or that failed",
    "commands": "commands sent to devices because a desired value changed",
    "dropped": "outgoing messages dropped (MQTT queue full)",
    "refused": "device payloads refused (not understood, implausible)",
    "errors": "device or bus errors (a read that failed, an owserver away)",
}
#: gauge name -> help text
GAUGES: dict[str, str] = {
    "devices_online": "devices the gateway currently sees as online or present",
}

#: seconds between two writes of a separate gateway's counters to the tree, at least
PUBLISH_INTERVAL = 60.0
#: where a separate gateway's counters go: ``.distkv gateway NAME``
TREE_ROOT = (".distkv", "gateway")


class GatewayCounters:
    """One gateway's counters (:data:`COUNTERS`) and gauges (:data:`GAUGES`).

    A gauge is either set (:meth:`set`) or read from the gateway when somebody looks
    (:meth:`follow`): the MQTT gateway's devices online are a sum over its entities,
    ~3 µs for 200 of them, too much per message burst but nothing per scrape."""

    __slots__ = ("counts", "_gauges")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._gauges: dict[str, int | Callable[[], int]] = dict.fromkeys(GAUGES, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` events of ``name`` (a key of :data:`COUNTERS`; another name is a
        bug and raises KeyError)."""
        self.counts[name] += n

    def set(self, name: str, value: int) -> None:
        """Set the gauge ``name`` (a key of :data:`GAUGES`)."""
        if name not in GAUGES:
            raise KeyError(name)
        self._gauges[name] = value

    def follow(self, name: str, read: Callable[[], int]) -> None:
        """The gauge ``name`` is ``read()`` whenever it is looked at."""
        if name not in GAUGES:
            raise KeyError(name)
        self._gauges[name] = read

    def gauge(self, name: str) -> int:
        g = self._gauges[name]
        return g() if callable(g) else g

    def snapshot(self) -> dict[str, int]:
        """Counters and gauges in one dict (what the tree entry holds)."""
        return {**self.counts, **{g: self.gauge(g) for g in self._gauges}}


class PublishPlan:
    """When a separate gateway writes its counters to the tree: only if they differ
    from the last write (the first change is written at once), and not within
    ``interval`` seconds of the last write. Pure: the caller passes the snapshot and
    the time."""

    def __init__(self, interval: float = PUBLISH_INTERVAL) -> None:
        self.interval = interval
        self.last: dict[str, int] = GatewayCounters().snapshot()  # all zero: not news
        self.last_time: float | None = None

    def due(self, snapshot: dict[str, int], now: float) -> bool:
        if snapshot == self.last:
            return False
        return self.last_time is None or now - self.last_time >= self.interval

    def done(self, snapshot: dict[str, int], now: float) -> None:
        self.last = snapshot
        self.last_time = now

    def next_check(self, now: float) -> float:
        """When a write could next be due (the caller sleeps until then)."""
        if self.last_time is None:
            return now
        return max(now, self.last_time + self.interval)


async def publish_counters(
    client, counters: GatewayCounters, name: str, interval: float = PUBLISH_INTERVAL
) -> None:
    """Write ``counters`` to ``.distkv gateway NAME`` as :class:`PublishPlan` allows,
    until cancelled. A login that may not write there gets one warning and no more
    tries (the gateway itself keeps running)."""
    import trio

    from distkv.exceptions import DistKVError, PermissionDenied
    from distkv.util import Path

    path = Path(*TREE_ROOT, name)
    plan = PublishPlan(interval)
    while True:
        now = trio.current_time()
        snap = counters.snapshot()
        if plan.due(snap, now):
            plan.done(snap, now)
            value: dict[str, Any] = {**snap, "time": time.time()}
            try:
                await client.set(path, value)
            except PermissionDenied as exc:
                logger.warning("gateway counters not written to %s: %s", path, exc)
                return
            except DistKVError as exc:
                logger.warning("gateway counters not written to %s: %s", path, exc)
        # an idle gateway wakes once a second to compare nine integers
        await trio.sleep_until(max(plan.next_check(trio.current_time()), trio.current_time() + 1))
