"""Private daemons for tests and benchmarks (mosquitto, owserver): the common part.

Tests must never use a system daemon (its port may be taken, its state leaks in, and
stopping it is not ours to do). A :class:`Daemon` starts its own process on a free
loopback port, waits until the port accepts connections (polling ``connect``, not a
fixed sleep), can stop and restart it *on the same port* (how outage tests take it
away under running clients), and only ever signals the PID it started.

The control methods are synchronous so that fixtures outside a trio loop can use
them; inside a trio test use the ``a*`` variants, which run the blocking parts in a
worker thread so the tasks under test keep running meanwhile.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import trio

from .process import free_port

logger = logging.getLogger(__name__)

__all__ = ["Daemon", "find_executable"]


def find_executable(name: str, paths: tuple[str, ...]) -> str | None:
    """The path of ``name`` on PATH or in ``paths`` (sbin is often not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return None


class Daemon:
    """One private daemon process. Subclasses set :attr:`name`, :attr:`paths` and
    :attr:`error` and define :attr:`command` (and :meth:`_prepare` for config files).

    Stopping sends SIGTERM and waits ``stop_grace`` seconds, up to ``stop_rounds``
    times (some daemons ignore a first SIGTERM, see owserver), then SIGKILL.
    """

    name = "daemon"
    paths: tuple[str, ...] = ()
    error: type[Exception] = RuntimeError
    stop_rounds = 1

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
        stop_grace: float = 5.0,
    ) -> None:
        exe = executable or find_executable(self.name, self.paths)
        if exe is None:
            raise self.error(f"{self.name} is not installed")
        self.executable = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.terminations = 0  # SIGTERMs the last stop took (1: like systemctl stop)
        self._dir = Path(tempfile.mkdtemp(prefix=f"distkv-{self.name}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def command(self) -> list[str]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write whatever the daemon needs before it starts (config files)."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / f"{self.name}.log"

    def log_text(self) -> str:
        """The daemon's output so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ sync control

    def start(self) -> None:
        """Start the daemon and return once its port accepts TCP connections."""
        if self.running:
            return
        self._prepare()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
        )
        logger.debug("%s pid %d on port %d", self.name, self._proc.pid, self.port)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._reap()
                raise self.error(f"{self.name} exited with {rc}:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise self.error(
                        f"{self.name} did not open port {self.port}:\n{self.log_text()}"
                    ) from None
                # Polling interval, not a synchronisation sleep: we re-check the port.
                time.sleep(0.005)

    def stop(self, *, kill: bool = False) -> int | None:
        """Stop it (SIGTERM, or SIGKILL with ``kill=True``) and wait; its exit code
        (None if it was not running). Its clients see their connections drop."""
        proc = self._proc
        if proc is None:
            return None
        self.terminations = 0
        if kill:
            proc.kill()
            proc.wait()
        for _ in range(self.stop_rounds):
            if proc.poll() is not None:
                break
            proc.terminate()
            self.terminations += 1
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rc = proc.returncode
        self._reap()
        return rc

    def _reap(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop it and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- trio control

    async def astart(self) -> None:
        """:meth:`start` without blocking the trio loop."""
        await trio.to_thread.run_sync(self.start)

    async def astop(self, *, kill: bool = False) -> int | None:
        """:meth:`stop` without blocking the trio loop."""
        return await trio.to_thread.run_sync(lambda: self.stop(kill=kill))
