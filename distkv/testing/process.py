"""Real ``distkv server`` processes for tests and benchmarks (loopback only)."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path as FsPath
from typing import IO

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A ``distkv server`` subprocess with its own config file.

    ``env`` (with ``DISTKV_CONFIG`` pointing at that file) makes plain ``distkv client
    ...`` commands talk to this server, so tests can run the tutorial's commands as
    printed.
    """

    def __init__(self, tmp: os.PathLike, name: str = "test1", *, cfg: dict | None = None):
        self.tmp = FsPath(tmp)
        self.name = name
        self.port = free_port()
        conf = {
            "connect": {"host": "127.0.0.1", "port": self.port},
            "server": {
                "bind_default": {"host": "127.0.0.1", "port": self.port},
                "mqtt": {"uri": None},
                "log_dirs": [str(self.tmp)],
            },
        }
        if cfg:
            from ..config import merge

            conf = merge(conf, cfg)
        self.cfg_file = self.tmp / f"{name}.cfg"
        self.cfg_file.write_text(yaml.safe_dump(conf))
        self.env = dict(os.environ, DISTKV_CONFIG=str(self.cfg_file), PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen | None = None
        self.log = self.tmp / f"{name}.log"

    def launch(self, *args: str) -> subprocess.Popen:
        """Start ``distkv server ARGS NAME`` without waiting for it (see :meth:`start`)."""
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distkv", "server", *args, self.name],
            stdout=subprocess.PIPE,
            stderr=self._logf,
            stdin=subprocess.DEVNULL,
            env=self.env,
            text=True,
        )
        return self.proc

    def start(self, *args: str, timeout: float = 15) -> str:
        """Start ``distkv server ARGS NAME``; returns its first stdout line
        (``Running.`` once it serves)."""
        self.launch(*args)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"server {self.name} did not start: {self.log.read_text()}")
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return line.strip()
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"server {self.name} does not accept connections")

    def run(
        self, cmd: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run a shell command line (``distkv ...`` works) against this server."""
        return subprocess.run(
            ["bash", "-c", cmd],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.shell_env(),
            timeout=timeout,
            cwd=self.tmp,
        )

    def shell_env(self) -> dict:
        """The environment for shell commands: this server's config, our ``distkv``."""
        bindir = os.path.dirname(sys.executable)
        return dict(self.env, PATH=bindir + os.pathsep + self.env.get("PATH", ""))

    @contextmanager
    def spawn(self, cmd: str) -> Iterator[subprocess.Popen]:
        """A long-running shell command (a watch, a runner), stopped on exit. Read its
        output with :func:`read_line`."""
        proc = subprocess.Popen(
            ["bash", "-c", cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.shell_env(),
            cwd=self.tmp,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
            proc.stderr.close()

    def stop(self, kill: bool = False) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc.stdout.close()
        self._logf.close()
        self.proc = None
        return rc


def read_line(stream: IO[str], timeout: float = 20) -> str:
    """The next line of a child's output; AssertionError if none comes in time."""
    # a thread, not select(): the text wrapper may hold lines select cannot see
    box: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    try:
        return box.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout} s") from None


def ok(res: subprocess.CompletedProcess) -> str:
    """The output of a command that must succeed, without a traceback."""
    assert res.returncode == 0, f"rc={res.returncode} out={res.stdout!r} err={res.stderr!r}"
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def fails(res: subprocess.CompletedProcess, message: str, rc: int = 1):
    """A command that must fail with exit code ``rc`` and exactly this one-line error."""
    assert res.returncode == rc, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.strip() == message, res.stderr
    return res
