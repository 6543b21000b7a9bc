"""Configuration: defaults, YAML files, ``-C key=value`` overrides.

The layout follows the original DistKV so existing config files carry over. Files are
searched in the usual places unless one is named with ``-c`` or ``DISTKV_CONFIG``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path as FsPath
from typing import Any

import yaml

from .exceptions import ConfigError

DEFAULT_PORT = 27586

DEFAULTS: dict[str, Any] = {
    "connect": {
        "host": "127.0.0.1",
        "port": DEFAULT_PORT,
        "auth": None,
        "ssl": None,
        "name": None,
        "init_timeout": 5,
        # More nodes to fall back on: ["host:port", ...] (null: host and port).
        "servers": None,
        # Connect again when the node goes away (watches resume, see client.py).
        "reconnect": True,
        # Microseconds to poll for a reply before sleeping (distkv/busypoll.py);
        # null: 100, or 0 on one CPU.
        "busy_poll": None,
    },
    "server": {
        "bind_default": {"host": "127.0.0.1", "port": DEFAULT_PORT, "ssl": None},
        # MQTT 3.1.1 (4): paho parses it about twice as fast as v5, and replication
        # needs none of v5's extras (its subscriptions do not overlap).
        "mqtt": {"uri": "mqtt://localhost:1883", "mqtt_version": 4},
        "root": "distkv",
        "advertise": None,
        "state_dir": None,
        # `client log dest/save` may make the server write files only below these
        # directories (and its state_dir).
        "log_dirs": ["/var/local/lib", "/var/lib/distkv"],
        "fsync": "interval",
        "fsync_interval": 1.0,
        # Bytes the server queues for one client before it cuts off that client's
        # streams with an overflow error (see docs/protocol.md, flow control).
        "window": 4 * 1024 * 1024,
        "max_message": 4 * 1024 * 1024,
        # What one client may cost this node (docs/operations.md, "Limits"). A request
        # past one gets a one-line error naming the key; a refused connection is logged.
        "limits": {
            "path_depth": 128,  # elements in a path
            "path_bytes": 8192,  # encoded size of one path
            "value_depth": 64,  # nesting of lists/maps in a value
            # elements one list or map of a message may announce: msgpack allocates
            # them up front, so a message held open with nested headers costs
            # nesting x array_len x 8 bytes until it completes
            "array_len": 4096,
            # the largest message before the login reply (when auth is on)
            "login_message": 16384,
            "watches": 1000,  # live watches per connection
            "clients": 1000,  # connections per node (each costs 2 fds)
            "clients_per_addr": 64,  # connections per client address
            # milliseconds one call of a stored type check or codec may run; past
            # it the call is stopped and reported as that type's (codec's) error
            "script_ms": 200,
        },
        # Microseconds a connection polls for the next request before sleeping, while
        # its client sends back to back (distkv/busypoll.py); null: 50, or 0 on one CPU.
        "busy_poll": None,
    },
    "logging": {"level": "WARNING"},
}

SEARCH_PATHS = (
    "~/.config/distkv.cfg",
    "~/.distkv.cfg",
    "/etc/distkv/distkv.cfg",
    "/etc/distkv.cfg",
)


def merge(base: dict, over: Mapping) -> dict:
    """Recursively merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str, option: str = "-C") -> tuple[list[str], Any]:
    """Parse one ``-C dotted.key=value`` item; the value is read as YAML. ``option``
    names the command-line option in errors."""
    if "=" not in item:
        raise ConfigError(f"{option} needs key=value, got {item!r}")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"{option} needs a key before '=', got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        why = " ".join(str(exc).split())
        raise ConfigError(f"cannot parse value of {option} {key}: {why}") from None
    return parts, value


def set_dotted(cfg: dict, parts: list[str], value: Any) -> None:
    d = cfg
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def read_file(path: str | os.PathLike) -> dict:
    try:
        with open(os.path.expanduser(path)) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        why = " ".join(str(exc).split())  # one line: YAML errors span several
        raise ConfigError(f"config file {path} is not valid YAML: {why}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def load(
    files: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
    extra: Mapping | None = None,
) -> dict:
    """Build the effective configuration.

    ``files`` (from ``-c``) replace the search; otherwise ``DISTKV_CONFIG`` or the first
    existing file of :data:`SEARCH_PATHS` is read. ``extra`` (a partial config from
    Python callers) and then ``overrides`` are applied last.
    """
    cfg = copy.deepcopy(DEFAULTS)
    files = list(files or ())
    if not files:
        env = os.environ.get("DISTKV_CONFIG")
        if env:
            files = [env]
        else:
            for p in SEARCH_PATHS:
                if FsPath(os.path.expanduser(p)).is_file():
                    files = [p]
                    break
    for f in files:
        cfg = merge(cfg, read_file(f))
    if extra:
        cfg = merge(cfg, extra)
    for item in overrides:
        parts, value = parse_override(item)
        set_dotted(cfg, parts, value)
    return cfg
