"""A private mosquitto broker for tests and benchmarks.

Tests must never talk to a system broker (port 1883 may be in use, retained messages
from other runs would leak in). :class:`Mosquitto` runs its own ``mosquitto`` with a
generated config file on a free loopback port; stopping and restarting it on the same
port is how split/heal and reconnect tests simulate a broker outage. Start, stop and
the trio variants are :class:`~distkv.testing.daemon.Daemon`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .daemon import Daemon, find_executable

__all__ = ["Mosquitto", "MosquittoError", "find_mosquitto", "mosquitto_running"]

_DEFAULT_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """The broker could not be started (missing binary, bad config, port never opened)."""


def find_mosquitto() -> str | None:
    """Return the path of the mosquitto binary, or None if it is not installed."""
    return find_executable("mosquitto", _DEFAULT_PATHS)


class Mosquitto(Daemon):
    """One private mosquitto process; see the module docstring.

    ``max_queued_messages`` is passed through to the config: mosquitto's default (1000)
    silently drops QoS 1 messages to a subscriber that falls behind, which throughput
    tests must avoid and loss tests may want to provoke. A restart loses retained
    messages (``persistence false``, like a real broker restart without a state file).
    """

    name = "mosquitto"
    paths = _DEFAULT_PATHS
    error = MosquittoError

    def __init__(self, *, max_queued_messages: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.max_queued_messages = max_queued_messages

    @property
    def uri(self) -> str:
        """The ``mqtt://host:port`` URI that :func:`distkv.bus.mqtt.open_mqtt_bus` takes."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self):
        return self._dir / "mosquitto.conf"

    @property
    def command(self) -> list[str]:
        return [self.executable, "-c", str(self.config_path)]

    def _prepare(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            # as docs/operations.md recommends: without it mosquitto's replies to a
            # node wait for that node's delayed ACK (Nagle), ~40 ms clumps
            "set_tcp_nodelay true",
        ]
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {int(self.max_queued_messages)}")
        self.config_path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def mosquitto_running(**kw: object) -> Iterator[Mosquitto]:
    """``with mosquitto_running() as broker:`` start a private broker, remove it after."""
    broker = Mosquitto(**kw)  # type: ignore[arg-type]
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
