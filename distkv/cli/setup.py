"""``distkv setup node``: turn a machine with DistKV installed into an appliance node.

What the docs used to ask of a person, done in one command, the same way every time:
the ``distkv`` system user (sysusers), ``/etc/distkv/distkv.cfg`` with comments (never
overwritten), the systemd units, then ``systemctl enable --now distkv``. Joining an
existing network and creating a new one are different on purpose: ``--init VALUE``
creates one (the node refuses it if the network already has nodes), without it the
node joins. ``--root DIR`` writes everything below DIR and runs nothing (packaging,
and the test that checks the result with ``systemd-analyze verify``).
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
    return p


def run_setup(cfg: dict, args: list[str]) -> int:
    a = setup_parser().parse_args(args)
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


def _units_dir() -> Path:
    """The unit files: installed beside the package (wheel data) or in a checkout."""
    here = Path(__file__).resolve().parents[2]
    for d in (Path(sys.prefix) / "share/distkv/systemd", here / "systemd"):
        if (d / "distkv.service").is_file():
            return d
    raise ConfigError("cannot find DistKV's systemd unit files (share/distkv/systemd)")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
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
