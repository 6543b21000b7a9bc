"""Server subprocesses for the benchmarks: spawn, wait for "Running.", measure, kill.

Every process is started by :class:`ProcessPool` and killed by it (by PID) on exit,
also on errors, Ctrl-C and when the watchdog fires. (No ``PR_SET_PDEATHSIG``: trio
forks from a worker thread, and the signal fires when that *thread* exits.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: .pyc files for the processes the benchmarks start, as an installed package has
#: them: with PYTHONDONTWRITEBYTECODE set (or a read-only checkout) every node would
#: otherwise compile all of DistKV on every start (~0.1 s of its start-up).
PYCACHE = REPO / "build" / "bench-pycache"


def child_env() -> dict[str, str]:
    """The environment of the processes the benchmarks start (see :data:`PYCACHE`)."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(PYCACHE))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# compiles our packages and imports what nodes, gateways and the web service load, so
# every third-party module they import has its .pyc in the cache too
_WARM = (
    "import compileall, sys; [compileall.compile_dir(d, quiet=1) for d in sys.argv[1:]]; "
    "import distkv.cli.main, distkv.server.server, distkv.server.web, distkv.bus.mqtt, "
    "encodings.idna, trio_websocket"
)


async def warm_pycache() -> None:
    """Fill :data:`PYCACHE` with .pyc files for everything a node imports, as an
    installed package has them, before the first process starts. Otherwise the first
    process to import a module compiles it, and the compiler's garbage stays in its
    RSS: with a cold cache the web node measured +5.8 MB instead of +2.7 (it alone
    compiled the WebSocket stack), or a baseline node 35.5 MB instead of 30.1 (it
    compiled DistKV), and start times include compiling."""
    dirs = [str(REPO / d) for d in ("distkv", "gateways", "hw")]
    await trio.run_process([sys.executable, "-c", _WARM, *dirs], env=child_env(), cwd=str(REPO))


def distkv_cmd() -> list[str]:
    """The ``distkv`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("distkv")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from distkv.cli.main import cmd; cmd()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from /proc, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Proc:
    name: str
    port: int
    process: trio.Process
    stderr_path: str
    start_s: float = 0.0  # spawn until "Running." was read
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class ProcessPool:
    """Owns every subprocess the benchmarks start."""

    def __init__(self):
        self.procs: list[Proc] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="distkv-bench-")
        #: a scratch directory removed with the pool (child stderr, generated configs)
        self.tmpdir: str = self._tmp.name
        self._warm = False

    async def spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        ready: bytes = b"Running.",
        timeout: float = 10,
    ) -> Proc:
        """Start ``argv`` and wait until it prints ``ready`` on stdout."""
        if not self._warm:
            await warm_pycache()
            self._warm = True
        errpath = os.path.join(self.tmpdir, f"{name}.{port}.stderr")
        errf = open(errpath, "wb")  # noqa: SIM115 - the child owns it
        t0 = time.perf_counter()
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errf,
                cwd=str(REPO),
                env=child_env(),
            )
        finally:
            errf.close()
        p = Proc(name, port, process, errpath)
        self.procs.append(p)
        buf = b""
        with trio.move_on_after(timeout) as scope:
            while ready not in buf:
                data = await process.stdout.receive_some(4096)
                if not data:
                    break
                buf += data
        p.start_s = time.perf_counter() - t0
        if ready not in buf:
            why = "timed out" if scope.cancelled_caught else f"exited ({process.poll()})"
            await self.stop(p)
            raise RuntimeError(
                f"{name} {why} before printing {ready!r}; stdout={buf[-500:]!r} "
                f"stderr={p.stderr_tail()!r}"
            )
        return p

    async def start_node(
        self,
        name: str,
        *args: str,
        conf: dict | None = None,
        timeout: float = 10,
    ) -> Proc:
        """Start ``distkv server ARGS NAME`` on a free loopback port (retrying if the
        port got taken). ``conf``: ``-C`` overrides; by default the node has no bus, so
        it never joins a broker that happens to run on this machine."""
        over = {"server.mqtt.uri": "null", **(conf or {})}
        last: Exception | None = None
        for _ in range(3):
            port = free_port()
            argv = [*distkv_cmd()]
            over.update({"server.bind_default.host": HOST, "server.bind_default.port": port})
            for k, v in over.items():
                argv += ["-C", f"{k}={v}"]
            argv += ["server", *args, name]
            try:
                return await self.spawn(name, argv, port, timeout=timeout)
            except RuntimeError as exc:
                last = exc
                if "in use" not in str(exc).lower():
                    raise
        raise RuntimeError(f"could not start {name}: {last}")

    async def start_echo(self) -> Proc:
        """Start the bare trio+msgpack echo server (bench/echo_server.py)."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.echo_server", HOST, str(port)]
        return await self.spawn("echo", argv, port)

    async def stop(self, p: Proc, timeout: float = 3) -> None:
        proc = p.process
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
            with trio.move_on_after(timeout):
                await proc.wait()
            if proc.poll() is None:
                proc.kill()
                with trio.move_on_after(timeout):
                    await proc.wait()
        if proc.stdout is not None:
            with trio.CancelScope(shield=True):
                await proc.stdout.aclose()
        if p in self.procs:
            self.procs.remove(p)

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            for p in list(self.procs):
                await self.stop(p)

    def kill_all_sync(self) -> None:
        """Last resort (outside trio, or from the watchdog thread): SIGKILL what we
        started and have not removed after reaping. No trio calls here: they need the
        trio thread (even ``Process.returncode`` does). An unreaped child keeps its PID,
        so the PID is still ours."""
        for p in list(self.procs):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.clear()
        self._tmp.cleanup()
