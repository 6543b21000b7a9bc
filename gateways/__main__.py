"""``distkv-gateway [-c FILE] [-C key=value] NAME``: run one gateway until stopped.

The configuration is DistKV's (the same files and ``DISTKV_CONFIG``, or ``-c`` files
instead of them, and ``-C`` overrides);
a gateway reads its own section ``gateways.NAME``, overridden by the tree's
``.distkv config gateways`` (it restarts when that changes), and logs in with
``connect.auth``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys

import trio

from distkv import config as _config
from distkv.cli.main import error_line
from distkv.client import open_client
from distkv.dynconfig import watch_config
from distkv.exceptions import ConfigError
from distkv.stopsignals import serve_until_stopped
from gateways.counters import GatewayCounters, publish_counters

TREE_CONFIG = "the tree's .distkv config gateways"
GATEWAYS = {"gpio": "hw.gpiogw", "mqtt": "gateways.mqtt", "owfs": "gateways.owfs"}


def parser() -> argparse.ArgumentParser:
    # the module docstring's second paragraph, without its reST markup
    about = __doc__.split("\n\n")[1].replace("``", "")
    p = argparse.ArgumentParser(prog="distkv-gateway", description=about)
    p.add_argument("-c", "--cfg", action="append", default=[], metavar="FILE")
    p.add_argument("-C", "--conf", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("gateway", choices=sorted(GATEWAYS))
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose > 1 else logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s.%(msecs)03d %(levelname)s:%(name)s:%(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        cfg = _config.load(a.cfg, a.conf)
        mod = importlib.import_module(GATEWAYS[a.gateway])
        check = getattr(mod, "check_config", None)
        if check is not None:  # a bad file is reported before anything connects
            check(_config.merge(mod.DEFAULTS, (cfg.get("gateways") or {}).get(a.gateway) or {}))
        trio.run(_run, cfg, mod, a.gateway)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            return 130
        line = error_line(exc)  # one line, also out of an ExceptionGroup; else a bug
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    return 0


async def _run(cfg: dict, mod, name: str) -> None:
    async with open_client(cfg) as client:
        await serve_until_stopped(_serve, client, cfg, mod, name)


async def _serve(
    client,
    cfg: dict,
    mod,
    name: str,
    *,
    task_status=trio.TASK_STATUS_IGNORED,
    metrics=None,
    label: str | None = None,
):
    """Run the gateway; restart it whenever ``.distkv config gateways`` changes its
    settings (see distkv.dynconfig). Its counters (:mod:`gateways.counters`, kept
    across restarts) go to ``metrics`` (the node's, for a gateway inside the node) as
    gateway ``label`` (default ``name``), or else to the tree entry ``.distkv gateway
    LABEL`` (at most once a minute, only after a change)."""
    log = logging.getLogger(mod.__name__)
    counters = GatewayCounters()
    async with (
        watch_config(client, "gateways", cfg.get("gateways") or {}) as settings,
        trio.open_nursery() as nursery,
    ):
        if metrics is not None:
            metrics.add_gateway(label or name, counters)
        else:
            nursery.start_soon(publish_counters, client, counters, label or name)
        current = scope = None
        check = getattr(mod, "check_config", None)
        async for section in settings:
            gcfg = _config.merge(mod.DEFAULTS, section.get(name) or {})
            if gcfg == current:
                continue
            if check is not None:
                try:
                    check(gcfg)
                except ConfigError as exc:
                    # The file was checked before this ran, so the tree's entry is
                    # wrong. A typo there must not stop every gateway of the network:
                    # a running one keeps its settings; one starting cannot.
                    where = f"{exc} (from {TREE_CONFIG})"
                    if scope is None:
                        raise ConfigError(where) from None
                    log.error("%s; the %s gateway keeps its current settings", where, name)
                    continue
            if scope is not None:
                log.warning("configuration changed: restarting the %s gateway", name)
                scope.cancel()
            current = gcfg
            scope = await nursery.start(_one, client, mod, gcfg, counters)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED


async def _one(
    client, mod, gcfg: dict, counters: GatewayCounters, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """One run of the gateway with these settings; started with its cancel scope."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(mod.serve, counters=counters), client, gcfg)
            task_status.started(scope)


if __name__ == "__main__":
    sys.exit(main())
