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
Start, stop and the trio variants are :class:`~distkv.testing.daemon.Daemon`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from .daemon import Daemon, find_executable

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
    return find_executable("owserver", _DEFAULT_PATHS)


class Owserver(Daemon):
    """One private owserver process; see the module docstring.

    ``devices`` are the family codes to simulate (``--tester=...``); ``args`` are
    passed on unchanged (e.g. ``["--readonly"]``). :meth:`restart` keeps the port, so
    tests can take the server away and bring it back under a running client.
    """

    name = "owserver"
    paths = _DEFAULT_PATHS
    error = OwserverError
    stop_rounds = 2  # a first SIGTERM may be ignored (see the module docstring)

    def __init__(
        self,
        *,
        devices: Sequence[str] = ("10", "28"),
        args: Sequence[str] = (),
        stop_grace: float = 1.0,
        **kw,
    ) -> None:
        super().__init__(stop_grace=stop_grace, **kw)
        self.devices = tuple(devices)
        self.args = tuple(args)

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


@contextlib.contextmanager
def owserver_running(**kw: object) -> Iterator[Owserver]:
    """``with owserver_running() as ows:`` start a private owserver, remove it after."""
    ows = Owserver(**kw)  # type: ignore[arg-type]
    try:
        ows.start()
        yield ows
    finally:
        ows.close()
