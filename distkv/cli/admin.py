"""``distkv client auth|acl|log``: users, login methods, ACLs, state files."""

from __future__ import annotations

import sys

import trio

from ..auth import get_method, resolve_params
from ..client import open_client
from ..core.acl import ACL_ROOT, acl_path, mode_mask, mode_str, user_path
from ..core.path import P, Path
from ..exceptions import ClientError, NoDataError
from .main import ArgParser, UsageError
from .output import yprint

AUTH = Path(None, "auth")


def _mode_arg(raw: str) -> str:
    try:
        return mode_str(mode_mask(raw))
    except ClientError as exc:
        raise UsageError(str(exc)) from None


# --- auth ---


def auth_parser() -> ArgParser:
    p = ArgParser(prog="distkv client auth", description="Users and login methods.")
    p.add_argument("-m", "--method", help="auth method (default: the current one)")
    sub = p.add_subparsers(dest="what", required=True)
    u = sub.add_parser("user", help="manage users")
    usub = u.add_subparsers(dest="op", required=True)
    a = usub.add_parser("add", help="add a user: name=NAME [password?=Prompt] ...")
    a.add_argument("params", nargs="+")
    usub.add_parser("list", help="list users")
    g = usub.add_parser("get", help="show a user's record (without secrets)")
    g.add_argument("name")
    d = usub.add_parser("delete", help="remove a user")
    d.add_argument("name")
    sp = usub.add_parser(
        "set", help="set a user's parameter: set [param] NAME KEY VALUE (or NAME KEY=VALUE)"
    )
    sp.add_argument("words", nargs="+", metavar="[param] NAME KEY VALUE")
    md = usub.add_parser("modify", help="change a user: name=NAME key=value ... [--aux k=v]")
    md.add_argument("--aux", action="append", default=[], metavar="KEY=VALUE")
    md.add_argument("params", nargs="+")
    i = sub.add_parser(
        "init", help="set this method up and switch to it: from now on everybody must log in"
    )
    # Without -s the original DistKV only set the method up; ours always switches
    # (there is nothing to set up first), so -s says what happens anyway.
    i.add_argument("-s", "--switch", action="store_true", help="switch to it (always done)")
    i.add_argument("-f", "--force", action="store_true", help="even if the method has no users")
    sub.add_parser("off", help="switch authorization off (needs an unrestricted user)")
    sub.add_parser("current", help="show the current method")
    grp = sub.add_parser(
        "group", help="groups: group set NAME ACL | group delete NAME | group list"
    )
    grp.add_argument("op", choices=["set", "delete", "list"])
    grp.add_argument("name", nargs="?")
    grp.add_argument("acl", nargs="?")
    return p


def run_auth(cfg: dict, args: list[str]) -> int:
    a = auth_parser().parse_args(args)
    return trio.run(_auth, cfg, a)


async def _current(client) -> str | None:
    res = await client.get(AUTH)
    v = res.get("value")
    return v.get("current") if isinstance(v, dict) else None


async def _auth(cfg: dict, a) -> int:
    async with open_client(cfg) as client:
        method = a.method or await _current(client)
        if a.what == "current":
            print(method or "(none: authorization is off)")
            return 0
        if a.what == "off":
            await client.set(AUTH, {"current": None})
            print("Authorization switched off")
            return 0
        if a.what == "group":
            base = AUTH + ("_group",)
            if a.op == "list":
                for n in await client.list(base):
                    print(n)
            elif a.op == "delete":
                await client.delete(base + (a.name,))
            else:
                if not a.name or not a.acl:
                    raise UsageError("group set NAME ACL")
                await client.set(base + (a.name,), {"acl": a.acl})
            return 0
        if method is None:
            raise UsageError("which auth method? use -m METHOD (e.g. -m password)")
        m = get_method(method)
        if a.what == "init":
            if not a.force and not await client.list(AUTH + (method, "user")) and m.needs_login:
                raise UsageError(
                    f"no {method} users yet: add one first (auth -m {method} user add ...),"
                    " or you lock yourself out (use --force to do it anyway)"
                )
            await client.set(AUTH, {"current": method})
            print(f"Authorization switched to {method}")
            return 0
        base = AUTH + (method, "user")
        if a.op == "add":
            name, record = m.make_user(resolve_params(a.params))
            await client.set(user_path(method, name), record)
        elif a.op == "list":
            for n in await client.list(base):
                print(n)
        elif a.op == "get":
            res = await client.get(user_path(method, a.name))
            if "value" not in res:
                raise NoDataError(f"no {method} user {a.name}")
            rec = {k: v for k, v in res.value.items() if k != "password"}
            yprint(rec)
        elif a.op == "delete":
            res = await client.delete(user_path(method, a.name))
            if not res.changed:
                raise NoDataError(f"no {method} user {a.name}")
        elif a.op in ("set", "modify"):
            if a.op == "set":
                name, changes = _set_words(a.words)
            else:
                params = resolve_params(a.params)
                name = params.pop("name", None)
                if not name:
                    raise UsageError("modify needs name=NAME")
                changes = dict(params)
                for item in a.aux:
                    k, eq, v = item.partition("=")
                    if not eq:
                        raise UsageError(f"--aux needs key=value, not {item!r}")
                    changes.setdefault("aux", {})[k] = v
            path = user_path(method, name)
            res = await client.get(path, nchain=1)
            if "value" not in res:
                raise NoDataError(f"no {method} user {name}")
            aux = changes.pop("aux", None)
            record = m.update_user(res.value, changes)
            record = {k: v for k, v in record.items() if v is not None}  # None = cleared
            if aux:
                record["aux"] = {**(record.get("aux") or {}), **aux}
            await client.set(path, record, chain=res.chain)
    return 0


def _set_words(words: list[str]) -> tuple[str, dict]:
    """``[param] NAME KEY VALUE...`` or ``[param] NAME KEY=VALUE``: the spellings people
    try. ``groups`` takes several values; ``-`` (or nothing) clears a parameter."""
    if words and words[0] == "param":
        words = words[1:]
    if len(words) == 2 and "=" in words[1]:
        key, _, value = words[1].partition("=")
        values = value.split(",") if value else []
    elif len(words) >= 2:
        key, values = words[1], words[2:]
    else:
        raise UsageError("auth user set [param] NAME KEY VALUE")
    if values in ([], ["-"]):
        return words[0], {key: None}
    return words[0], {key: values if key == "groups" else values[0]}


# --- acl ---


def acl_parser() -> ArgParser:
    p = ArgParser(prog="distkv client acl", description="Access control lists.")
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser("set", help="set ACL NAME: -a MODES PATTERN (modes from rwcdx)")
    s.add_argument("name")
    s.add_argument(
        "-a", "--mode", required=True, help="modes: r read, w write, c create, d delete, x enter"
    )
    s.add_argument("pattern", help="path pattern; + = one element, # = any rest")
    sub.add_parser("list", help="list ACL names")
    g = sub.add_parser("get", help="show an ACL's rules")
    g.add_argument("name")
    d = sub.add_parser("delete", help="delete a rule (or, without a pattern, the whole ACL)")
    d.add_argument("name")
    d.add_argument("pattern", nargs="?")
    return p


def run_acl(cfg: dict, args: list[str]) -> int:
    a = acl_parser().parse_args(args)
    return trio.run(_acl, cfg, a)


async def _acl(cfg: dict, a) -> int:
    async with open_client(cfg) as client:
        if a.op == "list":
            for n in await client.list(Path(*ACL_ROOT)):
                print(n)
        elif a.op == "set":
            await client.set(acl_path(a.name, P(a.pattern)), _mode_arg(a.mode))
        elif a.op == "get":
            base = acl_path(a.name)
            rules = {}
            async for r in client.get_tree(base):
                rules[str(r.path)] = r.value
            if not rules:
                raise NoDataError(f"no ACL {a.name}")
            yprint(rules)
        elif a.op == "delete":
            if a.pattern:
                res = await client.delete(acl_path(a.name, P(a.pattern)))
                if not res.changed:
                    raise NoDataError(f"ACL {a.name} has no rule {a.pattern}")
            else:
                await client.delete(acl_path(a.name), recursive=True)
    return 0


# --- log ---


def log_parser() -> ArgParser:
    p = ArgParser(prog="distkv client log", description="State files written by the server.")
    sub = p.add_subparsers(dest="op", required=True)
    d = sub.add_parser("dest", help="write the state to FILE, then append every change")
    d.add_argument("-i", "--incremental", action="store_true", help="only changes from now on")
    d.add_argument("-1", "--oneshot", action="store_true", help="write the state once, then stop")
    d.add_argument("file")
    s = sub.add_parser("save", help="write a consistent snapshot to FILE (a backup)")
    s.add_argument("file")
    sub.add_parser("stop", help="stop writing the log file")
    return p


def run_log(cfg: dict, args: list[str]) -> int:
    a = log_parser().parse_args(args)
    return trio.run(_log, cfg, a)


async def _log(cfg: dict, a) -> int:
    async with open_client(cfg) as client:
        if a.op == "stop":
            res = await client.request("log_stop")
            if not res.stopped:
                print("no log file was being written", file=sys.stderr)
        else:
            oneshot = a.op == "save" or a.oneshot
            res = await client.request(
                "log", file=a.file, incremental=getattr(a, "incremental", False), oneshot=oneshot
            )
            print(res.file, file=sys.stderr)
    return 0
