"""``distkv client data [PATH] ACTION ...``: read and write entries.

``get``, ``set``, ``delete`` and ``list`` are one-shot commands, often run once per
value by scripts: they use the blocking client of :mod:`.oneshot` and never import
trio. ``watch`` runs until stopped and uses the trio client.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.path import P, Path
from ..core.types import NotGiven
from ..exceptions import ClientChainError, NoDataError, ValueTypeError
from .commands import DATA_ACTIONS
from .main import ArgParser, UsageError

HELP = ("-h", "--help")


def data_parser() -> ArgParser:
    """For ``data --help`` only: the actions parse their own arguments."""
    p = ArgParser(
        prog="distkv client data",
        usage="%(prog)s [PATH] [ACTION] [OPTIONS]   (or: ACTION [OPTIONS] [PATH])",
        description="Read and write entries. PATH is dotted (one.two, ':' is the root);"
        " without an action: get. 'distkv client data ACTION --help' shows an action's"
        " options.",
    )
    p.add_argument("path", nargs="?", help="the entry's path")
    p.add_argument("action", nargs="?", choices=DATA_ACTIONS, help="default: get")
    return p


def action_parser(action: str) -> ArgParser:
    p = ArgParser(prog=f"distkv client data {action}")
    if action == "get":
        p.add_argument("-r", "--recursive", action="store_true", help="the whole subtree")
        p.add_argument(
            "-d",
            "--as-dict",
            metavar="KEY",
            help="with -r: print one nested mapping, values under KEY (e.g. -d_)",
        )
        p.add_argument("-m", "--mindepth", type=int, default=0)
        p.add_argument("-M", "--maxdepth", type=int, default=-1)
        p.add_argument(
            "-c", "--chain", type=int, default=0, metavar="N", help="also show N links of the chain"
        )
    elif action == "set":
        p.add_argument(
            "-v",
            "--value",
            nargs=2,
            action=_Ordered,
            metavar=("KEY", "VALUE"),
            help="set KEY (a path inside the value; ':' = all of it) to a string",
        )
        p.add_argument(
            "-e",
            "--eval",
            nargs=2,
            action=_Ordered,
            metavar=("KEY", "EXPR"),
            help="like -v but EXPR is a Python literal (123, True, b'x', [1,2], ...)",
        )
        p.add_argument(
            "-P",
            "--path-value",
            nargs=2,
            action=_Ordered,
            metavar=("KEY", "PATH"),
            help="like -v but the value is a path",
        )
        p.add_argument("--new", action="store_true", help="fail if the entry exists")
        p.add_argument(
            "--chain",
            metavar="CHAIN",
            help="fail unless the entry still has this chain (as printed by get -c)",
        )
    elif action == "delete":
        p.add_argument("-r", "--recursive", action="store_true", help="delete the whole subtree")
        p.add_argument("--chain", metavar="CHAIN", help="fail unless the chain still matches")
    elif action == "watch":
        p.add_argument("-f", "--fetch", action="store_true", help="first print the current state")
        p.add_argument("-m", "--mindepth", type=int, default=0)
        p.add_argument("-M", "--maxdepth", type=int, default=-1)
        p.add_argument("-c", "--chain", type=int, default=0, metavar="N")
    p.add_argument("path", nargs="?", help="the entry's path (e.g. one.two, ':' for the root)")
    return p


class _Ordered(argparse.Action):
    """Collect -v/-e/-P in command-line order: later ones apply on top of earlier ones."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "items", None) or []
        items.append((self.dest, values[0], values[1]))
        namespace.items = items


def split_data_args(args: list[str]) -> tuple[str | None, str, list[str]]:
    """``data PATH ACTION ...`` or ``data ACTION ... PATH``: both spellings work."""
    if not args:
        return None, "get", []
    if args[0] in DATA_ACTIONS:
        return None, args[0], args[1:]
    path, rest = args[0], args[1:]
    if rest and rest[0] in DATA_ACTIONS:
        return path, rest[0], rest[1:]
    if rest and not rest[0].startswith("-"):
        raise UsageError(
            f"distkv client data: unknown action {rest[0]!r} ({', '.join(DATA_ACTIONS)})"
        )
    return path, "get", rest


def parse_value(kind: str, raw: str) -> Any:
    if kind == "value":
        return raw
    if kind == "path_value":
        return P(raw)
    try:
        import ast  # only -e pays for it

        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        if str(exc).startswith("malformed node"):  # a name, a call, an operator
            # (ast's own text names an object address: "<ast.Name object at 0x7f...>")
            why = "not a Python literal (text needs quotes, or -v instead of -e)"
        else:
            why = f"{exc.__class__.__name__}: {exc}"
        raise ValueTypeError(f"cannot evaluate {raw!r}: {why}") from None


def run_data(cfg: dict, args: list[str]) -> int:
    if args and args[0] in HELP:  # never a path
        data_parser().print_help()
        return 0
    if args and args[0] == "internal":  # the tutorial's "data internal dump :"
        from .client import run_internal

        return run_internal(cfg, args[1:])
    path1, action, rest = split_data_args(args)
    a = action_parser(action).parse_args(rest)
    if path1 is not None and a.path is not None:
        raise UsageError("give the path once, before or after the action")
    path = P(path1 if path1 is not None else (a.path or ":"))
    if action == "watch":
        import trio

        from .main import setup_logging

        setup_logging(cfg)
        return trio.run(_watch, cfg, path, a)
    from .oneshot import connect

    with connect(cfg) as client:
        return ONESHOT[action](client, path, a)


def _get(client, path: Path, a) -> int:
    from .output import chain_out, nest, yprint

    if not a.recursive:
        res = client.get(path, nchain=a.chain)
        if "value" not in res:
            raise NoDataError(f"{path} has no value")
        if a.chain:
            yprint({"value": res.value, "chain": chain_out(res.get("chain")), "tock": res.tock})
        else:
            yprint(res.value)
        return 0
    stream = client.get_tree(path, min_depth=a.mindepth, max_depth=a.maxdepth, nchain=a.chain)
    if a.as_dict is not None:
        items = []
        for r in stream:
            v = r.value
            if a.chain:
                v = {"value": v, "chain": chain_out(r.get("chain")), "tock": r.tock}
            items.append((r.path, v))
        yprint(nest(items, a.as_dict))
        return 0
    first = True
    for r in stream:
        doc = {"path": str(r.path), "value": r.value}
        if a.chain:
            doc["chain"] = chain_out(r.get("chain"))
            doc["tock"] = r.tock
        if not first:
            sys.stdout.write("---\n")
        first = False
        yprint(doc)
    return 0


def apply_item(value: Any, key: Path, new: Any) -> Any:
    """Put ``new`` at ``key`` inside ``value`` (mappings are created as needed)."""
    if not key:
        return new
    base = dict(value) if isinstance(value, dict) else {}
    d = base
    for k in key[:-1]:
        nxt = d.get(k)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        d[k] = nxt
        d = nxt
    d[key[-1]] = new
    return base


def _parse_chain(raw: str) -> Any:
    try:
        import ast  # only -e pays for it

        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise UsageError(f"cannot read chain {raw!r}; use the form printed by 'get -c'") from None


def _set(client, path: Path, a) -> int:
    items = getattr(a, "items", None)
    if not items:
        raise UsageError(
            "set needs a value: -v KEY VALUE or -e KEY EXPR (KEY ':' = the whole value)"
        )
    items = [(P(k), parse_value(kind, raw)) for kind, k, raw in items]
    if not any(len(k) for k, _ in items):
        kw = {}
        if a.new:
            kw["chain"] = None
        elif a.chain:
            kw["chain"] = _parse_chain(a.chain)
        client.set(path, items[-1][1], **kw)
        return 0
    # A partial update is a read-modify-write, guarded by the chain; retry if
    # somebody else changed the entry in between.
    for _attempt in range(10):
        res = client.get(path, nchain=1)
        value = res.get("value", NotGiven)
        if a.new and value is not NotGiven:
            raise ClientChainError(f"{path} exists already")
        for k, v in items:
            value = apply_item(value, k, v)
        try:
            client.set(path, value, chain=res.get("chain") or None)
            return 0
        except ClientChainError:
            continue
    raise ClientChainError(f"{path} keeps changing; gave up after 10 attempts")


def _delete(client, path: Path, a) -> int:
    if a.recursive:
        res = client.delete(path, recursive=True)
        print(f"deleted {res.count} entries", file=sys.stderr)
        return 0
    kw = {}
    if a.chain:
        kw["chain"] = _parse_chain(a.chain)
    res = client.delete(path, **kw)
    if not res.changed:
        raise NoDataError(f"{path} has no value")
    return 0


def _list(client, path: Path, a) -> int:
    for name in client.list(path):
        print(str(Path(name)))
    return 0


ONESHOT = {"get": _get, "set": _set, "delete": _delete, "list": _list}


async def _watch(cfg: dict, path: Path, a) -> int:
    from ..client import open_client
    from .output import chain_out, yformat

    async with open_client(cfg) as client:
        async with client.watch(
            path, fetch=a.fetch, min_depth=a.mindepth, max_depth=a.maxdepth, nchain=a.chain
        ) as w:
            async for r in w:
                if "path" not in r:
                    doc = {"state": r.state}
                else:
                    doc = {"path": str(r.path)}
                    if "value" in r:
                        doc["value"] = r.value
                    else:
                        doc["deleted"] = True
                    if a.chain:
                        doc["chain"] = chain_out(r.get("chain"))
                    if r.get("conflict"):
                        doc["conflict"] = True
                sys.stdout.write(yformat(doc) + "---\n")
                sys.stdout.flush()
    return 0
