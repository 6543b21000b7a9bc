"""Run ``distkv`` command lines in-process from trio tests (fast: no interpreter
start-up per command), against a server of :mod:`distkv.testing.server`.

The command runs in a worker thread because it runs its own event loop (``trio.run``)
or blocks on a socket; its standard streams are redirected while it runs, so only one
command runs at a time. Long-running commands (``watch``, ``run all``) and the
tutorial's shell walk stay with the subprocess helpers of :mod:`distkv.testing.process`.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass

import trio

from ..cli.main import main
from ..server import Server
from .server import make_config

_one_at_a_time = trio.Lock()


@dataclass(frozen=True)
class CliResult:
    """What the user would see: exit code, standard output, standard error."""

    code: int
    out: str
    err: str


def cli_config(server: Server, **over) -> dict:
    """A configuration whose ``connect`` reaches ``server`` (started with ``tcp=True``)."""
    host, port = server.ports[0]
    return make_config(connect={"host": host, "port": port}, **over)


async def run_cli(argv: list[str], *, cfg: dict, stdin: str = "") -> CliResult:
    """Run ``distkv ARGV`` with the configuration ``cfg`` (no config files are read)."""
    async with _one_at_a_time:
        return await trio.to_thread.run_sync(_run, list(argv), cfg, stdin)


def _run(argv: list[str], cfg: dict, stdin: str) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv, cfg=cfg)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())
