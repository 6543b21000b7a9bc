"""Runner and gateway *instances*: one description, run either way.

Why: every gateway and runner used to share the node's configuration file, so a
gateway could not have its own login without editing units, and a second MQTT gateway
needed a hand-written unit. Now an instance is a small file of its own,
``INSTANCES/gateway-NAME.cfg`` or ``runner-NAME.cfg`` (``instances``, default
``/etc/distkv``), holding what a ``server.services`` entry holds (see
:data:`distkv.config.SERVICE`): the gateway's kind and settings or the runner's job set,
and its own login (``auth``). The same file is run

- as a process of its own: ``distkv instance gateway-NAME`` (the unit
  ``distkv-gateway@NAME.service``; ``distkv-runner@NAME.service`` for runners), or
- inside the node: ``server.services: [gateway-NAME]``.

Files are checked like the main configuration: a typo is one line naming the file and
the key. For the units of earlier versions, ``gateway-mqtt`` (``owfs``, ``gpio``)
without a file is that gateway with ``gateways.mqtt`` and ``connect.auth``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import SERVICE, merge, read_file
from ..exceptions import ConfigError
from ..schema import check
from .main import ArgParser

KINDS = ("gateway", "runner")
#: instance names: what a systemd instance name and a file name both take as they are
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_RUNNER_KEYS = ("node", "group", "name", "hw")
_GATEWAY_KEYS = ("gateway", "settings")


class Instance:
    """A checked instance description: ``kind`` (gateway/runner), ``name``, ``desc``
    (the mapping, as in :data:`~distkv.config.SERVICE`) and ``where`` it came from
    (a file, or ``server.services item N``) for messages."""

    __slots__ = ("kind", "name", "desc", "where")

    def __init__(self, kind: str, name: str, desc: dict, where: str):
        self.kind = kind
        self.name = name
        self.desc = desc
        self.where = where

    def __repr__(self) -> str:
        return f"<{self.kind} instance {self.name} from {self.where}>"

    @property
    def gateway(self) -> str | None:
        return self.desc.get("gateway")

    def describe(self) -> str:
        if self.kind == "gateway":
            g = self.gateway
            return f"gateway {self.name}" + (f" ({g})" if g != self.name else "")
        d = self.desc
        which = d.get("node") and f"-n {d['node']}" or d.get("group") and f"-g {d['group']}"
        return " ".join(filter(None, ("runner", self.name, f"({which or 'any node'})")))


def gateway_modules() -> dict[str, str]:
    from gateways.__main__ import GATEWAYS

    return GATEWAYS


def instance_file(cfg: Mapping, ref: str) -> Path:
    """``gateway-NAME`` -> ``INSTANCES/gateway-NAME.cfg``; a path stays a path."""
    if "/" in ref or ref.endswith(".cfg"):
        return Path(ref)
    return Path(cfg.get("instances") or "/etc/distkv") / f"{ref}.cfg"


def _split(stem: str) -> tuple[str | None, str]:
    kind, sep, name = stem.partition("-")
    if sep and kind in KINDS and name:
        return kind, name
    return None, stem


def load_instance(cfg: Mapping, ref: str | Mapping, index: int = 0) -> Instance:
    """The instance ``ref`` names (a file) or is (a ``server.services`` mapping),
    checked, with the gateway's settings checked by the gateway. One-line
    :class:`ConfigError` naming the file (or entry) and the key otherwise."""
    if isinstance(ref, Mapping):
        desc = dict(ref)
        where = f"server.services item {index}"
        kind = desc.get("kind") or "runner"
        default_name = desc.get("gateway") if kind == "gateway" else desc.get("name")
        inst = Instance(kind, str(default_name or ""), desc, where)
        return _checked(cfg, inst)
    path = instance_file(cfg, ref)
    stem = path.name[: -len(".cfg")] if path.name.endswith(".cfg") else path.name
    kind, name = _split(stem)
    if not path.is_file():
        if kind == "gateway" and name in gateway_modules() and "/" not in ref:
            # distkv-gateway@mqtt.service of earlier versions: gateways.mqtt, connect.auth
            return _checked(cfg, Instance(kind, name, {"kind": kind, "gateway": name}, str(path)))
        how = f"distkv setup {kind} {name}" if kind else "distkv setup gateway|runner NAME"
        near = _similar_instances(path, stem)
        hint = f"did you mean {' or '.join(near)}? or " if near else ""
        raise ConfigError(f"no instance file {path} ({hint}write one with: {how} ...)")
    desc = read_file(path)
    try:
        check(SERVICE, desc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    given = desc.get("kind")
    if given is None:
        if kind is None:
            raise ConfigError(
                f"{path}: kind: say runner or gateway (or name the file gateway-NAME.cfg"
                " or runner-NAME.cfg)"
            )
        desc["kind"] = kind
    elif kind is not None and given != kind:
        raise ConfigError(f"{path}: kind: {given!r}, but the file is named {kind}-{name}.cfg")
    return _checked(cfg, Instance(desc["kind"], name, desc, str(path)))


def _similar_instances(path: Path, stem: str) -> list[str]:
    """Instance files next to the missing ``path`` whose names are close to ``stem``:
    a typo (``gateway-kichen``) or the bare name (``kitchen`` for
    ``gateway-kitchen``, what ``--check`` and ``server.services`` want)."""
    import difflib

    try:
        have = sorted(p.name[:-4] for p in path.parent.glob("*.cfg") if _split(p.name[:-4])[0])
    except OSError:
        return []
    bare = [h for h in have if _split(h)[1] == stem]
    return bare or difflib.get_close_matches(stem, have, n=2, cutoff=0.75)


def _checked(cfg: Mapping, inst: Instance) -> Instance:
    d, where = inst.desc, inst.where
    wrong = _RUNNER_KEYS if inst.kind == "gateway" else _GATEWAY_KEYS
    for k in wrong:
        if d.get(k) not in (None, False):
            raise ConfigError(f"{where}: {k}: a {inst.kind} does not take it")
    if inst.kind == "gateway":
        mods = gateway_modules()
        g = d.get("gateway")
        if g is None and inst.name in mods:
            d["gateway"] = g = inst.name
        if g not in mods:
            raise ConfigError(
                f"{where}: gateway: {g!r} is not one of " + ", ".join(sorted(mods))
            )
        import importlib

        mod = importlib.import_module(mods[g])
        check_config = getattr(mod, "check_config", None)
        if check_config is not None:  # its settings, before anything connects
            try:
                check_config(merge(mod.DEFAULTS, gateway_settings(cfg, inst, mod.DEFAULTS)))
            except ConfigError as exc:
                msg = str(exc)
                if d.get("settings"):  # the key as this file spells it
                    msg = msg.replace(f"gateways.{g}.", "settings.").replace(
                        f"gateways.{g}:", "settings:"
                    )
                raise ConfigError(f"{where}: {msg}") from None
    return inst


def gateway_settings(cfg: Mapping, inst: Instance, defaults: Mapping | None = None) -> dict:
    """The gateway's section for this instance: ``gateways.KIND`` of the node's
    configuration, overridden by the instance's ``settings``. An MQTT gateway instance
    is named after the instance (its client id and status topic), so two of them on
    one broker do not throw each other out."""
    g = inst.gateway
    out = merge((cfg.get("gateways") or {}).get(g) or {}, inst.desc.get("settings") or {})
    if (
        inst.name != g
        and defaults is not None
        and "name" in defaults
        and out.get("name") is None
    ):
        out["name"] = inst.name
    return out


def instance_config(cfg: Mapping, inst: Instance) -> dict:
    """The configuration the instance runs with: its own login, its settings."""
    over: dict[str, Any] = {}
    if inst.desc.get("auth"):
        over["connect"] = {"auth": inst.desc["auth"]}
    if inst.kind == "gateway":
        import importlib

        mod = importlib.import_module(gateway_modules()[inst.gateway])
        over["gateways"] = {inst.gateway: gateway_settings(cfg, inst, mod.DEFAULTS)}
    return merge(dict(cfg), over)


async def serve_instance(
    client, icfg: dict, inst: Instance, *, task_status=None, metrics=None
) -> None:
    """Run the instance on ``client`` with its configuration ``icfg``
    (:func:`instance_config`) until cancelled; started once it serves. A gateway's
    counters go to ``metrics`` (the node's, inside the node), else to the tree."""
    import trio

    task_status = task_status or trio.TASK_STATUS_IGNORED
    if inst.kind == "gateway":
        import importlib

        from gateways.__main__ import _serve

        mod = importlib.import_module(gateway_modules()[inst.gateway])
        await _serve(
            client, icfg, mod, inst.gateway, task_status=task_status, metrics=metrics,
            label=inst.name,
        )  # fmt: skip
        return
    import contextlib

    from ..client.runner import Runner

    d = inst.desc
    async with contextlib.AsyncExitStack() as stack:
        hw = None
        if d.get("hw"):
            from hw.host import open_hardware

            hw = await stack.enter_async_context(open_hardware(icfg))
        name = d.get("name")
        if name is None and inst.where.endswith(".cfg"):
            import socket

            # runner-NAME.cfg: HOST-NAME, so two instances on a host, or one instance
            # file copied to several hosts, never share a runner name
            name = f"{socket.gethostname()}-{inst.name}"
        runner = Runner(client, node=d.get("node"), group=d.get("group"), name=name, hw=hw)
        await runner.serve(task_status=task_status)


# --- distkv instance ---


def instance_parser() -> ArgParser:
    p = ArgParser(
        prog="distkv instance",
        description="Run one gateway or runner instance (INSTANCES/gateway-NAME.cfg or"
        " runner-NAME.cfg) until stopped; prints 'Running.' once it serves.",
    )
    p.add_argument(
        "ref",
        metavar="KIND-NAME",
        help="gateway-NAME or runner-NAME (a file in `instances`, default /etc/distkv),"
        " or the path of an instance file",
    )
    p.add_argument("--check", action="store_true", help="only check the file, run nothing")
    return p


def run_instance(cfg: dict, args: list[str]) -> int:
    a = instance_parser().parse_args(args)
    inst = load_instance(cfg, a.ref)
    icfg = instance_config(cfg, inst)
    if a.check:
        print(f"{inst.where}: ok ({inst.describe()})")
        return 0
    import trio

    from ..groups import unwrap_group

    with unwrap_group():
        trio.run(_main, icfg, inst)
    return 0


async def _main(icfg: dict, inst: Instance) -> None:
    import sys

    from ..client import open_client
    from ..stopsignals import serve_until_stopped

    async with open_client(icfg) as client:
        sys.stdout.reconfigure(line_buffering=True)  # job output as it happens
        await serve_until_stopped(serve_instance, client, icfg, inst)
