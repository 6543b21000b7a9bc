"""``distkv client code|run|error``: stored code, the jobs that run it, their errors."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import socket
import sys
import time

import trio

from ..client import open_client
from ..client.runner import Runner, job_roots
from ..config import parse_override, set_dotted
from ..core.path import P, Path
from ..core.runner import CODE_ROOT, ERROR_ROOT, RUNNER_ROOT, STATE_ROOT
from ..exceptions import ConfigError, NoDataError
from .main import ArgParser
from .output import nest, yprint
from .types import add_get_list_delete, read_file, read_scripts


def _job_data(items: list[str]) -> dict:
    """``-d key=value`` items, read like ``-C`` overrides: YAML values, dotted keys
    nest (``-d lamp.room=kitchen``)."""
    data: dict = {}
    for item in items:
        set_dotted(data, *parse_override(item, option="-d"))
    return data


def _seconds(raw: str) -> float:
    """``-t``: a finite number (``nan`` would store a job that never becomes due)."""
    try:
        v = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}")
    return v


def _interval(raw: str) -> float:
    """``-r``: more than 0 seconds. Runners refuse a job with another repeat as
    malformed, so it would be stored and then never run, with an error only in the
    runners' logs."""
    v = _seconds(raw)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"the interval must be more than 0 seconds, not {raw}")
    return v


# --- code ---


def code_parser() -> ArgParser:
    p = ArgParser(prog="distkv client code", description="Code stored in the tree, for runners.")
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser(
        "set",
        help="store code at PATH: the body of an async function, from standard input"
        " (or --script FILE); it sees the job's data as variables, plus client and info",
    )
    s.add_argument("-s", "--script", metavar="FILE")
    s.add_argument("path")
    add_get_list_delete(sub, "piece of stored code", "stored code", arg="path")
    return p


def run_code(cfg: dict, args: list[str]) -> int:
    a = code_parser().parse_args(args)
    if a.op == "set":
        a.code = (
            read_file(a.script)
            if a.script
            else read_scripts(["Enter the Python code (the body of an async function)."])[0]
        )
    return trio.run(_code, cfg, a)


async def _code(cfg: dict, a) -> int:
    async with open_client(cfg) as client:
        if a.op == "list":
            async for r in client.get_tree(Path(*CODE_ROOT)):
                print(r.path)
            return 0
        path = Path(*CODE_ROOT, *P(a.path))
        if a.op == "set":
            # compiled here too, so a syntax error shows before anything is stored
            from ..core.script import compile_script

            compile_script(a.code, f"code {a.path}", params=(), is_async=True)
            await client.set(path, {"code": a.code})
        elif a.op == "get":
            res = await client.get(path)
            if "value" not in res:
                raise NoDataError(f"no code at {a.path}")
            yprint(res.value)
        elif a.op == "delete":
            if not (await client.delete(path)).changed:
                raise NoDataError(f"no code at {a.path}")
    return 0


# --- run ---


def run_parser() -> ArgParser:
    p = ArgParser(
        prog="distkv client run",
        description="Jobs: run stored code on any node's runner (default), on one node's"
        " (-n NODE) or on one of a group's (-g GROUP).",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("-n", "--node", help="the one-node job set of NODE")
    where.add_argument("-g", "--group", help="the job set of runner group GROUP")
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser("set", help="set -c CODE [-t TIME] [-r SECONDS] [-d k=v] JOBPATH")
    s.add_argument("-c", "--code", required=True, help="path of the stored code")
    s.add_argument(
        "-t", "--time", type=_seconds, default=None,
        help="when to run: seconds from now (0 = now), or a Unix time",
    )  # fmt: skip
    s.add_argument("-r", "--repeat", type=_interval, default=None, help="run again every N seconds")
    s.add_argument("-d", "--data", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument(
        "-a", "--all", action="store_true",
        help="run on every runner of the set (e.g. every host of a group), not on one",
    )  # fmt: skip
    s.add_argument("path")
    g = sub.add_parser("get", help="show a job and its state")
    g.add_argument("path")
    sub.add_parser("list", help="list the jobs of this set")
    d = sub.add_parser("delete", help="delete a job (a running one is stopped)")
    d.add_argument("path")
    r = sub.add_parser("all", help="be a runner for this set: run its jobs until interrupted")
    r.add_argument(
        "-N", "--name",
        help="this runner's name (default: the host name; HOST-GROUP with -g, so runners of"
        " two groups on one host do not clash)",
    )  # fmt: skip
    r.add_argument(
        "--hw",
        action="store_true",
        help="own this host's hardware (gateways.gpio, gateways.owfs): jobs get it as hw;"
        " only with -n or -g",
    )
    return p


def run_run(cfg: dict, args: list[str]) -> int:
    a = run_parser().parse_args(args)
    if a.op == "all" and a.hw and a.node is None and a.group is None:
        raise ConfigError("run all --hw needs -n NODE or -g GROUP: hardware is on one host")
    if a.op == "set" and a.time is not None and a.time < 1e9:
        a.time += time.time()
    return trio.run(_run, cfg, a)


async def _run(cfg: dict, a) -> int:
    jobs, states, _ = job_roots(a.node, a.group)
    async with open_client(cfg) as client:
        if a.op == "all":
            sys.stdout.reconfigure(line_buffering=True)  # job output shows as it happens
            async with _hardware(cfg, a) as hw:
                name = a.name
                if name is None and a.group is not None:
                    name = f"{socket.gethostname()}-{a.group}"
                runner = Runner(client, node=a.node, group=a.group, name=name, hw=hw)
                # SIGTERM (systemd) and Ctrl-C stop it cleanly: running jobs are cancelled
                # and its heartbeat is removed, so the other runners take over at once
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(runner.serve)
                        async for _ in signals:
                            nursery.cancel_scope.cancel()
                            break
        elif a.op == "list":
            async for r in client.get_tree(jobs):
                print(r.path)
        elif a.op == "set":
            # a job whose code is missing would fail only when it runs, on some runner
            if "value" not in await client.get(Path(*CODE_ROOT, *P(a.code))):
                raise NoDataError(f"no code at {a.code} (store it with: code set {a.code})")
            job = {
                "code": list(P(a.code)),
                "target": a.time,
                "repeat": a.repeat,
                "data": _job_data(a.data),
            }
            if a.all:
                job["all"] = True
            await client.set(jobs + P(a.path), job)
        elif a.op == "get":
            res = await client.get(jobs + P(a.path))
            if "value" not in res:
                raise NoDataError(f"no job {a.path}")
            if isinstance(res.value, dict) and res.value.get("all"):
                # one state per runner: .distkv state every RUNNER <set> PATH
                every = Path(*STATE_ROOT, "every")
                want = tuple(states[2:]) + tuple(P(a.path))
                per = {
                    r.path[0]: r.value
                    async for r in client.get_tree(every)
                    if tuple(r.path[1:]) == want
                }
                yprint({"job": res.value, "states": per})
            else:
                state = await client.get(states + P(a.path))
                out = {"job": res.value, "state": state.get("value")}
                if a.node is not None:
                    # pinned to one host: is a runner there? (it beats every second)
                    alive = Path(*RUNNER_ROOT, "node", a.node)
                    now = time.time()
                    beats = [r.value.get("seen", 0) async for r in client.get_tree(alive)
                             if isinstance(r.value, dict)]  # fmt: skip
                    last = max(beats, default=None)
                    if last is None:
                        out["runner"] = (
                            f"no runner on {a.node} (start one with distkv client run -n {a.node} all)"
                        )
                    elif now - last > 3.5:
                        out["runner"] = (
                            f"down, the runner on {a.node} was last seen {now - last:.0f} s ago"
                        )
                    else:
                        out["runner"] = f"running on {a.node}"
                yprint(out)
        elif a.op == "delete":
            if not (await client.delete(jobs + P(a.path))).changed:
                raise NoDataError(f"no job {a.path}")
            await client.delete(states + P(a.path))
    return 0


@contextlib.asynccontextmanager
async def _hardware(cfg: dict, a):
    """This host's hardware for ``run all --hw`` (hw.host), else None."""
    if not a.hw:
        yield None
        return
    from hw.host import open_hardware

    async with open_hardware(cfg) as hw:
        yield hw


# --- error ---


def error_parser() -> ArgParser:
    p = ArgParser(prog="distkv client error", description="Errors that runners recorded.")
    sub = p.add_subparsers(dest="op", required=True)
    ls = sub.add_parser("list", help="list errors, optionally only those below PATH")
    ls.add_argument(
        "-d", "--as-dict", metavar="KEY", default="_", help="key for each path's errors (default _)"
    )
    ls.add_argument("-a", "--all", action="store_true", help="with details (time, count)")
    ls.add_argument("-n", "--node", help="only errors seen by this runner")
    ls.add_argument("path", nargs="?", default=":")
    c = sub.add_parser("clear", help="forget the errors below PATH (default: all)")
    c.add_argument("path", nargs="?", default=":")
    return p


def run_error(cfg: dict, args: list[str]) -> int:
    a = error_parser().parse_args(args)
    return trio.run(_error, cfg, a)


async def _errors(client, prefix: Path, node: str | None):
    """``(error entry path, record, path relative to prefix)`` of matching errors."""
    root = Path(*ERROR_ROOT) if node is None else Path(*ERROR_ROOT, node)
    async for r in client.get_tree(root):
        rec = r.value
        epath = root + r.path
        where = rec.get("path") if isinstance(rec, dict) else None
        if isinstance(where, tuple) and where[: len(prefix)] == prefix:
            yield epath, rec, where[len(prefix) :]


async def _error(cfg: dict, a) -> int:
    prefix = P(a.path)
    async with open_client(cfg) as client:
        if a.op == "clear":
            async for epath, _rec, _rel in _errors(client, prefix, None):
                await client.delete(epath)
            return 0
        items = []
        async for epath, rec, rel in _errors(client, prefix, a.node):
            runner = epath[2]
            if a.all:
                detail = {k: v for k, v in rec.items() if k != "path"}
                detail["entry"] = epath
            else:
                detail = rec.get("message")
            items.append((rel, {runner: detail}))
        merged: list = []
        for rel, d in items:  # several runners may report the same path
            for mrel, md in merged:
                if mrel == rel:
                    md.update(d)
                    break
            else:
                merged.append((rel, d))
        if merged:
            yprint(nest(merged, a.as_dict))
    return 0
