"""``distkv server``: run one node in the foreground."""

from __future__ import annotations

import ast
import logging
import os
import signal
import sys

import trio

from ..core.types import NotGiven
from ..groups import unwrap_group
from ..server.notify import sd_notify
from .main import ArgParser

logger = logging.getLogger(__name__)


def server_parser() -> ArgParser:
    p = ArgParser(prog="distkv server", description="Run a DistKV node.")
    p.add_argument(
        "-i",
        "--init",
        metavar="VALUE",
        help="start a NEW network with this root value (never on a running network)",
    )
    p.add_argument(
        "-e", "--eval", action="store_true", help="evaluate the -i value as a Python literal"
    )
    p.add_argument(
        "-l",
        "--load",
        metavar="FILE",
        action="append",
        default=[],
        help="load this state file on start (repeatable)",
    )
    p.add_argument("-s", "--state-dir", metavar="DIR", help="keep state in this directory")
    p.add_argument("-H", "--host", help="bind address (server.bind_default.host)")
    p.add_argument("-p", "--port", type=int, help="port (server.bind_default.port)")
    p.add_argument("name", help="this node's name (unique in the network)")
    return p


def run_server(cfg: dict, args: list[str]) -> int:
    a = server_parser().parse_args(args)
    if a.host:
        cfg["server"]["bind_default"]["host"] = a.host
    if a.port is not None:
        cfg["server"]["bind_default"]["port"] = a.port
    if a.state_dir:
        cfg["server"]["state_dir"] = a.state_dir
    init = NotGiven
    if a.init is not None:
        init = ast.literal_eval(a.init) if a.eval else a.init
    try:
        with unwrap_group():
            trio.run(_main, cfg, a.name, init, a.load)
    except OSError as exc:
        print(f"ServerError: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _main(cfg: dict, name: str, init, load: list[str]) -> None:
    from ..server import Server

    server = Server(name, cfg, init=init)
    for f in load:
        server.load_file(f)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, nursery.cancel_scope)
        await nursery.start(server.serve)
        host, port = server.ports[0]
        await _until_serving(server, f"{host}:{port}")
        print("Running.", flush=True)
        sd_notify(READY=1, STATUS=f"serving on {host}:{port}")
        watchdog = _watchdog_interval()
        if watchdog:
            nursery.start_soon(_watchdog, watchdog)


async def _until_serving(server, where: str) -> None:
    """``Running.`` and READY=1 mean "serving current data": a joining node first
    syncs, a restarted one first catches up. Meanwhile STATUS= says what it does."""
    last = None
    while not server.serving:
        rep = server.replicator
        status = rep.status if rep is not None else "starting"
        if status != last:
            sd_notify(STATUS=f"{status} (listening on {where})")
            last = status
        await trio.sleep(0.05)


def _watchdog_interval() -> float | None:
    """Half of systemd's ``WatchdogSec`` (``WATCHDOG_USEC``), if it is for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def _watchdog(interval: float) -> None:
    """WATCHDOG=1 while the event loop runs: a task that is scheduled on time proves
    the loop is not stuck (a stored script looping, a blocking call). A broker outage
    must not count: a node keeps serving through one."""
    while True:
        sd_notify(WATCHDOG=1)
        await trio.sleep(interval)


async def _signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        async for sig in sigs:
            logger.info("signal %s: shutting down", sig)
            sd_notify(STOPPING=1)
            scope.cancel()
            return
