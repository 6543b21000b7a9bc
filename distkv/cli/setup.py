"""``distkv setup node|gateway|runner``: turn a machine with DistKV installed into an
appliance node, and add gateway and runner instances to it.

What the docs used to ask of a person, done in one command, the same way every time:
the ``distkv`` system user (sysusers), ``/etc/distkv/distkv.cfg`` with comments (never
overwritten), the systemd units, then ``systemctl enable --now distkv``. Joining an
existing network and creating a new one are different on purpose: ``--init VALUE``
creates one (the node refuses it if the network already has nodes), without it the
node joins. ``--root DIR`` writes everything below DIR and runs nothing (packaging,
and the test that checks the result with ``systemd-analyze verify``).

``distkv setup gateway NAME --kind mqtt`` (``runner NAME``) writes a commented instance
file ``/etc/distkv/gateway-NAME.cfg`` (see :mod:`.instance`), readable by the
``distkv`` group only (it may hold a password), and says how to run it: as the unit
``distkv-gateway@NAME`` or inside the node (``server.services``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from ..exceptions import ConfigError
from .main import ArgParser

UNITS = (
    "distkv.service",
    "distkv-runner.service",
    "distkv-runner-node.service",
    "distkv-runner-group@.service",
    "distkv-runner@.service",
    "distkv-gateway@.service",
    "distkv-backup.service",
    "distkv-backup.timer",
)


def setup_parser() -> ArgParser:
    p = ArgParser(prog="distkv setup", description="Set this machine up as a DistKV node.")
    sub = p.add_subparsers(dest="what", required=True)
    n = sub.add_parser("node", help="user, config, systemd units; then start the node")
    n.add_argument(
        "--broker", metavar="URI", help="mqtt://HOST[:PORT] of the network (else a lone node)"
    )
    n.add_argument("--network-key", metavar="KEY", help="the network's key (16-64 bytes)")
    n.add_argument(
        "--new-key", action="store_true", help="make a new network key (print it for the others)"
    )
    n.add_argument(
        "--root-name", metavar="NAME", help="the network's name on the broker (server.root)"
    )
    n.add_argument("--init", metavar="VALUE", help="create a NEW network with this root value")
    n.add_argument("--root", metavar="DIR", default="/", help="install below DIR, run nothing")
    n.add_argument("--bin", metavar="DIR", help="where distkv is installed (default: this one's)")

    g = sub.add_parser("gateway", help="write a gateway instance file (/etc/distkv/gateway-NAME.cfg)")
    g.add_argument("name", help="the instance's name (unit distkv-gateway@NAME)")
    g.add_argument("--kind", required=True, choices=GATEWAY_KINDS, help="which gateway")
    g.add_argument("--uri", metavar="URI", help="mqtt: the devices' broker (mqtt://HOST:PORT)")
    r = sub.add_parser("runner", help="write a runner instance file (/etc/distkv/runner-NAME.cfg)")
    r.add_argument("name", help="the instance's name (unit distkv-runner@NAME)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("-n", "--node", help="run the jobs pinned to NODE")
    where.add_argument("-g", "--group", help="run the jobs of runner group GROUP")
    r.add_argument("--hw", action="store_true", help="give jobs this host's hardware")
    for q in (g, r):
        q.add_argument(
            "--auth", metavar="LOGIN", help='its own login, e.g. "password name=gw password=..."'
        )
        q.add_argument("--root", metavar="DIR", default="/", help="write below DIR, run nothing")
        q.add_argument("--bin", metavar="DIR", help="where distkv is installed (default: this one's)")
    return p


GATEWAY_KINDS = ("gpio", "mqtt", "owfs")


def run_setup(cfg: dict, args: list[str]) -> int:
    a = setup_parser().parse_args(args)
    if a.what != "node":
        return _setup_instance(a)
    root = Path(a.root)
    live = root == Path("/")
    if live and os.geteuid() != 0:
        raise ConfigError("distkv setup node needs root (sudo), or --root DIR to stage it")
    key = a.network_key
    if a.new_key:
        key = secrets.token_hex(24)
    if key is not None and not 16 <= len(key.encode()) <= 64:
        raise ConfigError("--network-key must have 16 to 64 bytes")
    if a.broker is not None and not a.broker.startswith(("mqtt://", "mqtts://")):
        raise ConfigError(f"--broker must be mqtt://HOST[:PORT], not {a.broker!r}")
    bindir = Path(a.bin) if a.bin else Path(sys.executable).parent

    wrote = []
    cfg_file = root / "etc/distkv/distkv.cfg"
    if not cfg_file.exists():
        _write(cfg_file, _config_text(a.broker, key, a.root_name))
        wrote.append(cfg_file)
    _write(root / "usr/lib/sysusers.d/distkv.conf", (_units_dir() / "distkv.sysusers").read_text())
    wrote.append(root / "usr/lib/sysusers.d/distkv.conf")
    for unit in UNITS:
        text = (_units_dir() / unit).read_text().replace("/opt/distkv/bin", str(bindir))
        _write(root / "etc/systemd/system" / unit, text)
        wrote.append(root / "etc/systemd/system" / unit)
    if a.init is not None:
        # the first start creates the network; with its state dir filled, -i is a no-op
        # on later starts, and on a network that has nodes the node refuses it
        dropin = root / "etc/systemd/system/distkv.service.d/init.conf"
        _write(
            dropin,
            "[Service]\nExecStart=\nExecStart="
            f"{bindir}/distkv server -i {_quote(a.init)} --state-dir /var/lib/distkv %H\n",
        )
        wrote.append(dropin)
    for f in wrote:
        print(f"wrote {f}")
    if key and a.new_key:
        print(f"network key (give it to every other node with --network-key): {key}")
    if live:
        for cmd in (
            ["systemd-sysusers"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "distkv"],
        ):
            if subprocess.run(cmd).returncode != 0:
                raise ConfigError(f"{' '.join(cmd)} failed")
        print("started: systemctl status distkv / journalctl -u distkv")
    return 0


def _setup_instance(a) -> int:
    """Write INSTANCES/KIND-NAME.cfg (never overwritten) and its unit template."""
    from .instance import NAME

    root = Path(a.root)
    live = root == Path("/")
    if live and os.geteuid() != 0:
        raise ConfigError(f"distkv setup {a.what} needs root (sudo), or --root DIR to stage it")
    if not NAME.fullmatch(a.name):
        raise ConfigError(f"{a.what} name {a.name!r}: use letters, digits, '_', '-' and '.'")
    bindir = Path(a.bin) if a.bin else Path(sys.executable).parent
    path = root / "etc/distkv" / f"{a.what}-{a.name}.cfg"
    unit = f"distkv-{a.what}@.service"
    wrote = []
    if path.exists():
        print(f"kept {path} (it exists)")
    else:
        text = _gateway_text(a) if a.what == "gateway" else _runner_text(a)
        _write(path, text, mode=0o640, group="distkv" if live else None)
        wrote.append(path)
    target = root / "etc/systemd/system" / unit
    if not target.exists():
        _write(target, (_units_dir() / unit).read_text().replace("/opt/distkv/bin", str(bindir)))
        wrote.append(target)
    for f in wrote:
        print(f"wrote {f}")
    # staged (--root): the file is not where `instance` looks; a path is taken as it is
    ref = f"{a.what}-{a.name}" if live else str(path)
    print(
        f"edit {path}, check it with `distkv instance --check {ref}`, then either\n"
        f"  systemctl enable --now distkv-{a.what}@{a.name}    (a process of its own), or\n"
        f"  add `- {a.what}-{a.name}` to server.services in /etc/distkv/distkv.cfg"
        " (inside the node)"
    )
    if live and wrote and wrote[-1] == target:
        if subprocess.run(["systemctl", "daemon-reload"]).returncode != 0:
            raise ConfigError("systemctl daemon-reload failed")
    return 0


def _header(a, what: str) -> list[str]:
    return [
        f"# DistKV {what} instance {a.name!r} (YAML). Run it as a process of its own,",
        f"#   systemctl enable --now distkv-{a.what}@{a.name}",
        f"# or inside the node: `server.services: [{a.what}-{a.name}]` in distkv.cfg.",
        "# Every key: `distkv dump schema instance`. A typo stops it with one line naming",
        f"# this file and the key; `distkv instance --check {a.what}-{a.name}` checks it.",
        "#",
        "# Its own login (with auth on: a user with just the rights it needs);",
        "# without one it uses connect.auth of distkv.cfg. This file is readable by",
        "# root and the distkv group only.",
        f"auth: {_yaml_str(a.auth)}" if a.auth else '# auth: "password name=NAME password=SECRET"',
    ]


def _gateway_text(a) -> str:
    lines = _header(a, f"{a.kind} gateway")
    lines += [
        f"gateway: {a.kind}",
        f"# Its settings: what gateways.{a.kind} holds in distkv.cfg (those apply too;",
        "# these override them for this instance). See docs/gateways.md, hardware.md.",
        "# `.distkv config gateways` in the tree overrides both, for every",
        f"# {a.kind} gateway of the network.",
        "settings:",
    ]
    if a.kind == "mqtt":
        lines += [
            f"  uri: {_yaml_str(a.uri or 'mqtt://localhost:1883')}   # the devices' broker",
            f"  # name: {a.name}          # default: the instance name (client id, status topic)",
            "  # It has nothing to do until it has entities (or a mirror topic), e.g.:",
            "  # entities:",
            "  #   plug1:                 # a Tasmota plug",
            "  #     template: tasmota",
            "  #     device: plug1",
            "  #     path: home.living.plug1",
            "  # topic: house            # or: mirror the tree below `path` to this topic",
        ]
    elif a.kind == "owfs":
        lines += [
            "  host: 127.0.0.1           # the owserver",
            "  port: 4304",
            "  path: onewire             # where the readings go",
            "  interval: 10.0            # seconds between polls",
        ]
    else:
        lines += [
            "  chip: /dev/gpiochip0",
            "  path: gpio                # where the levels go",
            "  # inputs:",
            "  #   door: {line: 17, debounce: 0.05}",
        ]
    return "\n".join(lines) + "\n"


def _runner_text(a) -> str:
    lines = _header(a, "runner")
    lines += [
        "# Which jobs it runs: a node's own (node: HOST), a group's (group: NAME), or",
        "# (neither) the any-node jobs. Its runner name is HOST-" + a.name + " unless name: says.",
        f"node: {_yaml_str(a.node)}" if a.node else "# node: HOST",
        f"group: {_yaml_str(a.group)}" if a.group else "# group: onewire",
        f"hw: {'true' if a.hw else 'false'}                 # jobs get this host's hardware (node or group only)",
    ]
    return "\n".join(lines) + "\n"


def _yaml_str(value: str) -> str:
    """A double-quoted YAML string (JSON's escapes are YAML's)."""
    import json

    return json.dumps(value)


def _units_dir() -> Path:
    """The unit files: installed beside the package (wheel data) or in a checkout."""
    here = Path(__file__).resolve().parents[2]
    for d in (Path(sys.prefix) / "share/distkv/systemd", here / "systemd"):
        if (d / "distkv.service").is_file():
            return d
    raise ConfigError("cannot find DistKV's systemd unit files (share/distkv/systemd)")


def _write(path: Path, text: str, mode: int = 0o644, group: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)  # whatever the umask
    if group is not None:
        import shutil

        try:
            shutil.chown(tmp, group=group)
        except LookupError:
            os.unlink(tmp)
            raise ConfigError(f"no group {group!r}: run `distkv setup node` first") from None
    os.replace(tmp, path)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'" if not value.isalnum() else value


def _config_text(broker: str | None, key: str | None, root_name: str | None) -> str:
    lines = [
        "# DistKV node configuration (YAML). Every key: `distkv dump schema`;",
        "# the effective configuration: `distkv dump cfg`. A typo stops the node with one",
        "# line in `journalctl -u distkv` naming the key.",
    ]
    if broker is None:
        lines += [
            "#",
            "# A lone node: no broker. For a network of nodes:",
            "# server:",
            '#   mqtt: {uri: "mqtt://broker.local:1883"}',
            '#   network_key: "output of: openssl rand -hex 24"   # the same on every node',
        ]
        return "\n".join(lines) + "\n"
    lines += ["server:", f'  mqtt: {{uri: "{broker}"}}']
    if root_name:
        lines.append(f'  root: "{root_name}"')
    if key:
        lines.append(f'  network_key: "{key}"   # the same on every node of the network')
    else:
        lines.append('  # network_key: "..."   # recommended: see operations.md')
    return "\n".join(lines) + "\n"


__all__ = ["run_setup", "setup_parser"]
