"""The ``distkv`` command: parse arguments, call the library, format the result.

Thin on purpose: every command is a few lines around a client call. Errors from the
library are printed as one line ``ErrorClass: message`` on stderr with a non-zero exit
code (also when trio wrapped the error in an ExceptionGroup); a traceback means a bug.

Nothing is imported before the command that needs it runs (see :mod:`.commands`):
a one-shot command is started by shell scripts and Node-RED ``exec`` nodes, once per
value, so its start-up time is the user's latency.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from .. import config as _config
from ..exceptions import DistKVError
from .commands import TOP

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(DistKVError):
    code = "usage"


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, told the terminal width: left to find it out itself, it
    imports shutil (and with it bz2, lzma, ...) for every parser, also when no help is
    printed."""
    try:
        width = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors print our way."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _help_formatter)
        super().__init__(*args, **kw)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def global_parser() -> ArgParser:
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
    p.add_argument("command", nargs="?", choices=sorted(TOP), help="what to do")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments (try --help)")
    return p


def _verbosity(cfg: dict, verbose: int, quiet: bool) -> None:
    """``-v``/``-q`` override ``logging.level``."""
    if verbose or quiet:
        level = "ERROR" if quiet else "INFO" if verbose == 1 else "DEBUG"
        cfg.setdefault("logging", {})["level"] = level


def setup_logging(cfg: dict) -> None:
    """Log to stderr at ``logging.level``, with time and logger name. Called before a
    command runs, or by the command itself where only some of its forms log (see
    ``logs`` in :mod:`.commands`).

    Under systemd (stderr connected to the journal, ``JOURNAL_STREAM``) records go to
    journald with their priority: through systemd-python's JournalHandler when it is
    installed (the ``systemd`` extra), else as ``<N>`` syslog prefixes on stderr,
    which journald reads as the priority; journald adds the time itself."""
    import logging

    level = cfg.get("logging", {}).get("level", "WARNING")
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.WARNING)
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]
        except ImportError:
            handler = logging.StreamHandler()
            handler.setFormatter(_SyslogPrefixFormatter("%(name)s: %(message)s"))
        else:
            handler = JournalHandler(SYSLOG_IDENTIFIER="distkv")
        logging.basicConfig(level=level, handlers=[handler])
        return
    logging.basicConfig(
        level=level,
        format="%(asctime)s.%(msecs)03d %(levelname)s:%(name)s:%(message)s",
        datefmt="%H:%M:%S",
    )


def _syslog_priority(levelno: int) -> int:
    """logging level -> syslog priority (3 err, 4 warning, 6 info, 7 debug)."""
    return (
        2
        if levelno >= 50
        else 3
        if levelno >= 40
        else 4
        if levelno >= 30
        else 6
        if levelno >= 20
        else 7
    )


class _SyslogPrefixFormatter:
    """``<N>message`` lines for journald; a traceback stays in the same record."""

    def __init__(self, fmt: str):
        import logging

        self._inner = logging.Formatter(fmt)

    def format(self, record) -> str:
        text = self._inner.format(record)
        prio = _syslog_priority(record.levelno)
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def cmd(argv: list[str] | None = None) -> None:
    """Entry point of the ``distkv`` command."""
    sys.exit(main(argv))


def error_line(exc: BaseException) -> str | None:
    """The one line the CLI prints for ``exc``, or None if it is not a DistKV error
    (a bug: its traceback is wanted).

    trio reports an error raised inside a nursery as an ExceptionGroup; one holding a
    single error is that error, and a group of DistKV errors prints one line each,
    each line once (the tasks of a gateway all fail alike when auth is switched on).
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        lines = [error_line(e) for e in exc.exceptions]
        return None if None in lines else "\n".join(dict.fromkeys(lines))  # type: ignore[arg-type]
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, DistKVError):
        return f"{type(exc).__name__}: {exc}"
    return None


GLOBAL_FLAGS = {"-c": "-c", "--cfg": "-c", "-C": "-C", "--conf": "-C"}
GLOBAL_FLAGS.update({"-v": "-v", "-vv": "-v", "--verbose": "-v", "-q": "-q", "--quiet": "-q"})


def _global_flag(word: str) -> str | None:
    """``-C``, ``-Ckey=value``, ``--conf=key=value``, ``-vv`` ... -> the flag's short
    name; None for a word that is no option of ``distkv`` itself."""
    if word[:2] in ("-c", "-C") and not word.startswith("--"):
        return word[:2]
    return GLOBAL_FLAGS.get(word.split("=", 1)[0])


def _misplaced_hint(command: str, args: list[str], message: str) -> str:
    """The docs write ``distkv -C KEY=VALUE server NAME``; users write ``distkv server
    -C KEY=VALUE NAME``, and argparse then blames a word instead of the option
    (``unrecognized arguments: -C NAME``, or ``invalid choice: 'connect.port=1'``
    when ``client`` took ``-C`` as the start of its arguments). Name where the
    option goes, if one of the words argparse blames is (or follows) a global option."""
    blamed: list[str] = []
    if "unrecognized arguments: " in message:
        blamed = message.split("unrecognized arguments: ", 1)[1].split()
    elif m := re.search(r"invalid choice: '([^']*)'", message):
        choice = m.group(1)
        blamed = [args[i - 1] for i, w in enumerate(args) if w == choice and i > 0] + [choice]
    for word in blamed:
        flag = _global_flag(word)
        if flag is not None:
            return f" ({flag} goes before the command: distkv {flag} ... {command} ...)"
    return ""


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """``exc`` is a ``kind``, possibly inside ExceptionGroups of one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return isinstance(exc, kind)


def main(argv: list[str] | None = None, *, cfg: dict | None = None) -> int:
    """Run one ``distkv`` command line; returns the exit code (``--help``: 0).

    ``cfg`` replaces the configuration files (``-C`` overrides still apply): tests use
    it to point a command at their server (see :mod:`distkv.testing.cli`).
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        g = global_parser().parse_args(argv)
        if g.command is None:
            global_parser().print_help()
            return EXIT_USAGE
        if cfg is None:
            cfg = _config.load(g.cfg, g.conf)
        else:
            cfg = _config.copy_tree(cfg)  # commands change it (client -H, -p)
            for item in g.conf:
                _config.set_dotted(cfg, *_config.parse_override(item))
        _verbosity(cfg, g.verbose, g.quiet)
        command = TOP[g.command]
        if command.logs:
            setup_logging(cfg)
        try:
            return command.runner()(cfg, g.args)
        except UsageError as exc:
            raise UsageError(f"{exc}{_misplaced_hint(g.command, g.args, str(exc))}") from None
    except SystemExit as exc:  # --help (argparse exits after printing it)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException as exc:
        if _only(exc, KeyboardInterrupt):
            return 130
        if _only(exc, BrokenPipeError):
            return EXIT_ERROR
        line = error_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return EXIT_USAGE if _only(exc, UsageError) else EXIT_ERROR


def dump_parser() -> ArgParser:
    p = ArgParser(prog="distkv dump", description="Show the effective configuration.")
    p.add_argument(
        "what",
        choices=["cfg", "schema"],
        help="cfg: the effective configuration; schema: every key, its type, default, meaning",
    )
    p.add_argument(
        "key", nargs="?", help="only this dotted key ('schema instance': an instance file's)"
    )
    return p


def run_dump(cfg: dict, args: list[str]) -> int:
    from .output import yprint

    a = dump_parser().parse_args(args)
    if a.what == "schema":
        from ..config import SCHEMA, SERVICE
        from ..schema import describe

        if a.key == "instance":  # an instance file (gateway-NAME.cfg, runner-NAME.cfg)
            rows, a.key = describe(SERVICE), None
        else:
            rows = describe(SCHEMA)
        for key, typ, default, help in rows:
            if a.key and not key.startswith(a.key):
                continue
            print(f"{key}: {typ}; default {default!r}" + (f"  # {help}" if help else ""))
        return 0
    data: Any = cfg
    if a.key:
        for k in a.key.split("."):
            if not isinstance(data, dict) or k not in data:
                raise UsageError(f"no config key {a.key}")
            data = data[k]
    yprint(data)
    return 0
