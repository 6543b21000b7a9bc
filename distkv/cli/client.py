"""``distkv client ...``: talk to a running server."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any

import trio

from ..client import open_client
from ..core.path import P, Path
from ..core.types import NotGiven
from ..exceptions import ClientChainError, NoDataError, ValueTypeError
from .main import ArgParser, UsageError
from .output import chain_out, flow_lists, nest, yformat, yprint

DATA_ACTIONS = ("get", "set", "delete", "list", "watch")


def _client_parser() -> ArgParser:
    p = ArgParser(prog="distkv client", add_help=False, description="Talk to a DistKV server.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "-H", "--host", help="server host (connect.host)")
    p.add_argument("-p", "--port", type=int, help="server port (connect.port)")
    p.add_argument("-a", "--auth", help='login, e.g. "password name=joe password?=Code"')
    p.add_argument("sub", nargs="?", help="data | internal")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def run_client(cfg: dict, args: list[str]) -> int:
    a = _client_parser().parse_args(args)
    c = cfg["connect"]
    if a.host:
        c["host"] = a.host
    if a.port is not None:
        c["port"] = a.port
    if a.auth:
        c["auth"] = a.auth
    if a.sub is None:
        _client_parser().print_help()
        return 2
    handler = SUBCOMMANDS.get(a.sub)
    if handler is None:
        raise UsageError(f"distkv client: unknown command {a.sub!r} ({', '.join(SUBCOMMANDS)})")
    return handler(cfg, a.args)


# --- data ---


def _data_parser(action: str) -> ArgParser:
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
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        raise ValueTypeError(f"cannot evaluate {raw!r}: {exc.__class__.__name__}: {exc}") from None


def run_data(cfg: dict, args: list[str]) -> int:
    if args and args[0] == "internal":  # the tutorial's "data internal dump :"
        return run_internal(cfg, args[1:])
    path1, action, rest = split_data_args(args)
    a = _data_parser(action).parse_args(rest)
    if path1 is not None and a.path is not None:
        raise UsageError("give the path once, before or after the action")
    path = P(path1 if path1 is not None else (a.path or ":"))
    return trio.run(DATA_FNS[action], cfg, path, a)


async def _get(cfg: dict, path: Path, a) -> int:
    async with open_client(cfg) as client:
        if not a.recursive:
            res = await client.get(path, nchain=a.chain)
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
            async for r in stream:
                v = r.value
                if a.chain:
                    v = {"value": v, "chain": chain_out(r.get("chain")), "tock": r.tock}
                items.append((r.path, v))
            yprint(nest(items, a.as_dict))
            return 0
        first = True
        async for r in stream:
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
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise UsageError(f"cannot read chain {raw!r}; use the form printed by 'get -c'") from None


async def _set(cfg: dict, path: Path, a) -> int:
    items = getattr(a, "items", None)
    if not items:
        raise UsageError(
            "set needs a value: -v KEY VALUE or -e KEY EXPR (KEY ':' = the whole value)"
        )
    items = [(P(k), parse_value(kind, raw)) for kind, k, raw in items]
    partial = any(len(k) for k, _ in items)
    async with open_client(cfg) as client:
        if not partial:
            kw = {}
            if a.new:
                kw["chain"] = None
            elif a.chain:
                kw["chain"] = _parse_chain(a.chain)
            await client.set(path, items[-1][1], **kw)
            return 0
        # A partial update is a read-modify-write, guarded by the chain; retry if
        # somebody else changed the entry in between.
        for _attempt in range(10):
            res = await client.get(path, nchain=1)
            value = res.get("value", NotGiven)
            if a.new and value is not NotGiven:
                raise ClientChainError(f"{path} exists already")
            for k, v in items:
                value = apply_item(value, k, v)
            try:
                await client.set(path, value, chain=res.get("chain") or None)
                return 0
            except ClientChainError:
                continue
        raise ClientChainError(f"{path} keeps changing; gave up after 10 attempts")


async def _delete(cfg: dict, path: Path, a) -> int:
    async with open_client(cfg) as client:
        if a.recursive:
            res = await client.delete(path, recursive=True)
            print(f"deleted {res.count} entries", file=sys.stderr)
            return 0
        kw = {}
        if a.chain:
            kw["chain"] = _parse_chain(a.chain)
        res = await client.delete(path, **kw)
        if not res.changed:
            raise NoDataError(f"{path} has no value")
    return 0


async def _list(cfg: dict, path: Path, a) -> int:
    async with open_client(cfg) as client:
        for name in await client.list(path):
            print(str(Path(name)))
    return 0


async def _watch(cfg: dict, path: Path, a) -> int:
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


DATA_FNS = {"get": _get, "set": _set, "delete": _delete, "list": _list, "watch": _watch}


# --- internal ---


def run_internal(cfg: dict, args: list[str]) -> int:
    p = ArgParser(prog="distkv client internal")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dump", help="dump the system tree (under null)")
    d.add_argument("path", nargs="?", default=":")
    sub.add_parser("state", help="this node's state")
    a = p.parse_args(args)
    return trio.run(_internal, cfg, a)


async def _internal(cfg: dict, a) -> int:
    async with open_client(cfg) as client:
        if a.what == "state":
            yprint(flow_lists(dict(await client.get_state())))
            return 0
        path = Path(None) + P(a.path)
        items = [(path + r.path, r.value) async for r in client.get_tree(path)]
        yprint(nest(items, "_"))
    return 0


def _lazy(mod: str, fn: str):
    def run(cfg: dict, args: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(mod, __package__), fn)(cfg, args)

    return run


SUBCOMMANDS = {
    "data": run_data,
    "internal": run_internal,
    "auth": _lazy(".admin", "run_auth"),
    "acl": _lazy(".admin", "run_acl"),
    "log": _lazy(".admin", "run_log"),
    "type": _lazy(".types", "run_type"),
    "codec": _lazy(".types", "run_codec"),
    "code": _lazy(".code", "run_code"),
    "run": _lazy(".code", "run_run"),
    "error": _lazy(".code", "run_error"),
}
