"""The ``distkv`` command: parse arguments, call the library, format the result.

Thin on purpose: every command is a few lines around a client call. Errors from the
library are printed as ``ErrorClass: message`` on stderr with a non-zero exit code;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .. import config as _config
from ..exceptions import DistKVError

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(DistKVError):
    code = "usage"


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors print our way."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _global_parser() -> ArgParser:
    p = ArgParser(prog="distkv", description="DistKV: a distributed key-value store")
    p.add_argument(
        "-c",
        "--cfg",
        action="append",
        default=[],
        metavar="FILE",
        help="read this config file (repeatable; replaces the search)",
    )
    p.add_argument(
        "-C",
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. -C server.root=test (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    p.add_argument("command", nargs="?", help="server | client | dump")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def setup_logging(cfg: dict, verbose: int, quiet: bool) -> None:
    level = cfg.get("logging", {}).get("level", "WARNING")
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.WARNING)
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(
        level=level,
        format="%(asctime)s.%(msecs)03d %(levelname)s:%(name)s:%(message)s",
        datefmt="%H:%M:%S",
    )


def cmd(argv: list[str] | None = None) -> None:
    """Entry point of the ``distkv`` command."""
    sys.exit(main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g = _global_parser().parse_args(argv)
        cfg = _config.load(g.cfg, g.conf)
        setup_logging(cfg, g.verbose, g.quiet)
        if g.command is None:
            _global_parser().print_help()
            return EXIT_USAGE
        if g.command == "server":
            from .server import run_server

            return run_server(cfg, g.args)
        if g.command == "client":
            from .client import run_client

            return run_client(cfg, g.args)
        if g.command == "dump":
            return run_dump(cfg, g.args)
        raise UsageError(f"unknown command {g.command!r}: use server, client or dump")
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except DistKVError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


def run_dump(cfg: dict, args: list[str]) -> int:
    from .output import yprint

    p = ArgParser(prog="distkv dump")
    p.add_argument("what", choices=["cfg"], help="cfg: the effective configuration")
    p.add_argument("key", nargs="?", help="only this dotted key")
    a = p.parse_args(args)
    data: Any = cfg
    if a.key:
        for k in a.key.split("."):
            if not isinstance(data, dict) or k not in data:
                raise UsageError(f"no config key {a.key}")
            data = data[k]
    yprint(data)
    return 0
