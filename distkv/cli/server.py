"""``distkv server``: run one node in the foreground."""

from __future__ import annotations

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
        "--force",
        action="store_true",
        help="-i even if the network already has nodes (overwrites its root value)",
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
    # before anything starts: one line naming what is wrong (the entry or its file)
    services = _services(cfg)
    init = NotGiven
    if a.init is not None:
        if a.eval:
            import ast  # only -e pays for it

            init = ast.literal_eval(a.init)
        else:
            init = a.init
    try:
        with unwrap_group():
            trio.run(_main, cfg, a.name, init, a.load, a.force, services)
    except OSError as exc:
        print(f"ServerError: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _main(
    cfg: dict, name: str, init, load: list[str], force: bool = False, services=()
) -> None:
    from ..server import Server

    server = Server(name, cfg, init=init, force_init=force)
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
        for inst in services:
            nursery.start_soon(_service, server, cfg, inst)


def _services(cfg: dict) -> list:
    """``server.services``, each entry (a mapping, or the name of an instance file)
    loaded and checked (see :mod:`.instance`)."""
    entries = cfg["server"].get("services") or []
    if not entries:
        return []
    from .instance import load_instance

    return [load_instance(cfg, e, i) for i, e in enumerate(entries)]


async def _service(server, cfg: dict, inst) -> None:
    """A runner or gateway in the node's own process (``server.services``): one Python
    process instead of one per service on a small board. It talks to the node through
    an in-process connection, with its own login if it has ``auth``; if it fails it is
    restarted with backoff, and it never takes the node down. A gateway's counters are
    the node's ``/metrics`` (``gateway="NAME"``), passed explicitly."""
    from ..client import open_client
    from .instance import instance_config, serve_instance

    what = inst.describe()
    icfg = instance_config(cfg, inst)
    delay = 1.0
    while True:
        try:
            async with open_client(icfg, _stream=server.open_local_stream()) as client:
                logger.info("service %s started", what)
                await serve_instance(client, icfg, inst, metrics=server.metrics)
                delay = 1.0
        except Exception as exc:  # noqa: BLE001 - a service must not take the node down
            from .main import error_line

            logger.error("service %s failed: %s; restarting in %.0f s", what,
                         error_line(exc) or repr(exc), delay)  # fmt: skip
        await trio.sleep(delay)
        delay = min(delay * 2, 30.0)


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
