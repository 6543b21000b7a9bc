"""The command tree of ``distkv``: every command's name and where it lives.

One table, away from the command modules, for two reasons:

- running a command imports only its own module: a one-shot ``distkv client data x
  set`` (shell and Node-RED ``exec`` automations) must not pay for ``auth``, ``types``
  or trio;
- ``--help`` and the tests can walk every command without running one, so a new
  command is covered as soon as it is in the table.

A command's module has a function building its :class:`~.main.ArgParser` (for
``--help`` and for parsing) and a function ``(cfg, args) -> exit code`` running it.
Argparse subparsers inside a command's parser (``auth user add``) are walked too.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterator, Mapping


class Command:
    """Where one command lives: ``module`` (in distkv.cli), the names of its parser
    and run functions, and the commands below it that its run function dispatches to
    by name. ``arg`` is passed to the parser function (the data actions share one);
    ``run`` is None where the parent's run function runs the command itself.
    ``logs=False``: the command sets up logging itself where it needs it (importing
    logging is a good part of a one-shot command's start-up). A plain class, not a
    NamedTuple: building one compiles its annotations at import."""

    __slots__ = ("module", "parser", "run", "children", "arg", "logs")

    def __init__(
        self,
        module: str,
        parser: str,
        run: str | None = None,
        children: Mapping[str, Command] | None = None,
        arg: str | None = None,
        logs: bool = True,
    ):
        self.module = module
        self.parser = parser
        self.run = run
        self.children = {} if children is None else children
        self.arg = arg
        self.logs = logs

    def make_parser(self) -> argparse.ArgumentParser:
        fn = getattr(importlib.import_module(self.module, __package__), self.parser)
        return fn() if self.arg is None else fn(self.arg)

    def runner(self) -> Callable[[dict, list[str]], int]:
        return getattr(importlib.import_module(self.module, __package__), self.run)


DATA_ACTIONS = ("get", "set", "delete", "list", "watch")

DATA = {a: Command(".data", "action_parser", arg=a) for a in DATA_ACTIONS}

CLIENT: dict[str, Command] = {
    "data": Command(".data", "data_parser", "run_data", DATA, logs=False),
    "internal": Command(".client", "internal_parser", "run_internal"),
    "auth": Command(".admin", "auth_parser", "run_auth"),
    "acl": Command(".admin", "acl_parser", "run_acl"),
    "log": Command(".admin", "log_parser", "run_log"),
    "type": Command(".types", "type_parser", "run_type"),
    "codec": Command(".types", "codec_parser", "run_codec"),
    "code": Command(".code", "code_parser", "run_code"),
    "run": Command(".code", "run_parser", "run_run"),
    "error": Command(".code", "error_parser", "run_error"),
}

TOP: dict[str, Command] = {
    "server": Command(".server", "server_parser", "run_server"),
    "client": Command(".client", "client_parser", "run_client", CLIENT, logs=False),
    "dump": Command(".main", "dump_parser", "run_dump"),
    "setup": Command(".setup", "setup_parser", "run_setup"),
    "instance": Command(".instance", "instance_parser", "run_instance"),
}


def walk() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every command below ``distkv`` as ``(words, parser)``, e.g.
    ``(["client", "auth", "user", "add"], <parser>)``; the top level itself is not
    included."""
    yield from _walk_table([], TOP)


def _walk_table(
    prefix: list[str], table: Mapping[str, Command]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    for name, cmd in table.items():
        words = [*prefix, name]
        yield from walk_parser(words, cmd.make_parser())
        yield from _walk_table(words, cmd.children)


def walk_parser(
    words: list[str], parser: argparse.ArgumentParser
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """``parser`` and, recursively, its argparse subparsers."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk_parser([*words, name], sub)
