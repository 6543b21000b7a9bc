"""A private ``owserver`` (owfs) with simulated 1-wire devices, for tests.

Tests must not use a system owserver: Debian's ``owserver.socket`` listens on port
4304 on all interfaces and may see real hardware. :class:`Owserver` starts its own
``owserver --foreground --tester=10,28 -p 127.0.0.1:PORT`` on a free loopback port,
waits until the port accepts connections (polling ``connect``, not a fixed sleep),
and stops it by the PID it started, like :mod:`distkv.testing.mosquitto` does for
the broker.

``--tester`` devices have fixed ids and readings: ``10.000010EF0000`` (DS18S20) and
``28.000028D70100`` (DS18B20), whose ``temperature`` reads 1.6 and 4.1 every time
(checked across reads and restarts; see :data:`TESTER_TEMPERATURES`). ``--fake``
would give random ids and a new reading on every read instead.

owserver 3.2 takes its first SIGTERM as a request to finish gracefully: it waits
for open client connections to close, indefinitely for an idle persistent one
(measured: still answering 40 s later; it exits the moment that connection closes).
A SIGTERM in the first milliseconds after its port opened is not acted upon either.
A second SIGTERM makes it exit. So :meth:`Owserver.stop` sends SIGTERM, waits
``stop_grace`` seconds, sends it once more, waits again, then sends SIGKILL. It
returns the exit code (0: clean, -9: killed); :attr:`Owserver.terminations` says how
many SIGTERMs it took, 1 meaning it stopped the way ``systemctl stop`` would stop it.

The control methods are synchronous, for fixtures outside trio; inside a trio test
use the ``a*`` variants, which run the blocking parts in a worker thread.
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
from collections.abc import Iterator, Sequence
from pathlib import Path

import trio

from .process import free_port

logger = logging.getLogger(__name__)

__all__ = [
    "Owserver",
    "OwserverError",
    "TESTER_DEVICES",
    "TESTER_TEMPERATURES",
    "find_owserver",
    "owserver_running",
]

_DEFAULT_PATHS = ("/usr/bin/owserver", "/usr/sbin/owserver", "/usr/local/bin/owserver")

#: The devices ``--tester=10,28`` simulates.
TESTER_DEVICES = ("10.000010EF0000", "28.000028D70100")
#: Their constant ``temperature`` readings (owserver 3.2p4, default Celsius scale).
TESTER_TEMPERATURES = {"10.000010EF0000": 1.6, "28.000028D70100": 4.1}


class OwserverError(RuntimeError):
    """owserver could not be started (not installed, exited, port never opened)."""


def find_owserver() -> str | None:
    """Return the path of the owserver binary, or None if it is not installed."""
    found = shutil.which("owserver")
    if found:
        return found
    for path in _DEFAULT_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


class Owserver:
    """One private owserver process; see the module docstring.

    ``devices`` are the family codes to simulate (``--tester=...``); ``args`` are
    passed on unchanged (e.g. ``["--readonly"]``). :meth:`restart` keeps the port, so
    tests can take the server away and bring it back under a running client.
    """

    def __init__(
        self,
        *,
        devices: Sequence[str] = ("10", "28"),
        args: Sequence[str] = (),
        port: int | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
        stop_grace: float = 1.0,
    ) -> None:
        exe = executable or find_owserver()
        if exe is None:
            raise OwserverError("owserver is not installed")
        self.executable = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.devices = tuple(devices)
        self.args = tuple(args)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.terminations = 0
        self._dir = Path(tempfile.mkdtemp(prefix="distkv-owserver-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def command(self) -> list[str]:
        return [
            self.executable,
            "--foreground",
            "--error_print=2",  # messages to stderr (our log file), not syslog
            f"--tester={','.join(self.devices)}",
            "-p",
            f"{self.host}:{self.port}",
            *self.args,
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / "owserver.log"

    def log_text(self) -> str:
        """owserver's output so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ sync control

    def start(self) -> None:
        """Start owserver and return once its port accepts TCP connections."""
        if self.running:
            return
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
        )
        logger.debug("owserver pid %d on port %d", self._proc.pid, self.port)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._reap()
                raise OwserverError(f"owserver exited with {rc}:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise OwserverError(
                        f"owserver did not open port {self.port}:\n{self.log_text()}"
                    ) from None
                # Polling interval, not a synchronisation sleep: we re-check the port.
                time.sleep(0.005)

    def stop(self, *, kill: bool = False) -> int | None:
        """Stop owserver (SIGTERM, or SIGKILL with ``kill=True``) and wait for it;
        its exit code (None if it was not running). Only our own child is signalled."""
        proc = self._proc
        if proc is None:
            return None
        self.terminations = 0
        if kill:
            proc.kill()
            proc.wait()
        for _ in range(2):  # a second SIGTERM if the first is not acted upon (see above)
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
        """Stop owserver and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Owserver:
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

    async def arestart(self) -> None:
        await trio.to_thread.run_sync(self.restart)


@contextlib.contextmanager
def owserver_running(**kw: object) -> Iterator[Owserver]:
    """``with owserver_running() as ows:`` start a private owserver, remove it after."""
    ows = Owserver(**kw)  # type: ignore[arg-type]
    try:
        ows.start()
        yield ows
    finally:
        ows.close()
