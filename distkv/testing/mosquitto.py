"""A private mosquitto broker for tests and benchmarks.

Tests must never talk to a system broker (port 1883 may be in use, retained messages
from other runs would leak in, and stopping it is not ours to do). :class:`Mosquitto`
starts its own ``mosquitto`` process on a free loopback port with a generated config
file, waits until the port accepts connections (polling ``connect``, not a fixed sleep),
and can stop and restart it *on the same port*, which is how split/heal and reconnect
tests simulate a broker outage. It only ever signals the PID it started itself.

The control methods are synchronous so that a session-scoped pytest fixture (which runs
outside any trio loop) can use them; inside a trio test use the ``a*`` variants, which run
the blocking parts in a worker thread so the bus tasks keep running meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

logger = logging.getLogger(__name__)

__all__ = ["Mosquitto", "MosquittoError", "find_mosquitto", "mosquitto_running"]

_DEFAULT_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """The broker could not be started (missing binary, bad config, port never opened)."""


def find_mosquitto() -> str | None:
    """Return the path of the mosquitto binary, or None if it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in _DEFAULT_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    """A currently free loopback TCP port (the kernel picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One private mosquitto process; see the module docstring.

    ``max_queued_messages`` is passed through to the config: mosquitto's default (1000)
    silently drops QoS 1 messages to a subscriber that falls behind, which throughput
    tests must avoid and loss tests may want to provoke.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        max_queued_messages: int | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise MosquittoError("mosquitto is not installed")
        self.executable = exe
        self.port = port or _free_port()
        self.host = "127.0.0.1"
        self.max_queued_messages = max_queued_messages
        self.start_timeout = start_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="distkv-mosquitto-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None
        self._write_config()

    @property
    def uri(self) -> str:
        """The ``mqtt://host:port`` URI that :func:`distkv.bus.mqtt.open_mqtt_bus` takes."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def config_path(self) -> Path:
        return self._dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self._dir / "mosquitto.log"

    def log_text(self) -> str:
        """The broker's log so far (for assertion messages when something goes wrong)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
        ]
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {int(self.max_queued_messages)}")
        self.config_path.write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------ sync control

    def start(self) -> None:
        """Start the broker and return once its port accepts TCP connections."""
        if self.running:
            return
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [self.executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        logger.debug("mosquitto pid %d on port %d", self._proc.pid, self.port)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._reap()
                raise MosquittoError(f"mosquitto exited with {rc}:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise MosquittoError(
                        f"mosquitto did not open port {self.port}:\n{self.log_text()}"
                    ) from None
                # Polling interval, not a synchronisation sleep: we re-check the port.
                time.sleep(0.005)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill=True``) and wait for it.

        Only our own child is signalled. Its clients see their connections drop, which
        is exactly what reconnect tests need.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def _reap(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port (retained messages are gone:
        ``persistence false``, like a real broker restart without a state file)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- trio control

    async def astart(self) -> None:
        """:meth:`start` without blocking the trio loop."""
        await trio.to_thread.run_sync(self.start)

    async def astop(self, *, kill: bool = False) -> None:
        """:meth:`stop` without blocking the trio loop."""
        await trio.to_thread.run_sync(lambda: self.stop(kill=kill))

    async def arestart(self) -> None:
        await trio.to_thread.run_sync(self.restart)


@contextlib.contextmanager
def mosquitto_running(**kw: object) -> Iterator[Mosquitto]:
    """``with mosquitto_running() as broker:`` start a private broker, remove it after."""
    broker = Mosquitto(**kw)  # type: ignore[arg-type]
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
