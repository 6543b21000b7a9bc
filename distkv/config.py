"""Configuration: defaults, YAML files, ``-C key=value`` overrides.

The layout follows the original DistKV so existing config files carry over. Files are
searched in the usual places unless one is named with ``-c`` or ``DISTKV_CONFIG``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path as FsPath
from typing import Any

from . import yamlsubset
from .exceptions import ConfigError
from .schema import (
    AnyOf,
    AnyValue,
    Bool,
    Float,
    Int,
    Key,
    ListOf,
    Nullable,
    OneOf,
    OpenSection,
    Section,
    Str,
    copy_tree,
    defaults,
)
from .schema import check as _check

DEFAULT_PORT = 27586

_PORT = Int(1, 65535)
_TLS_CLIENT = Nullable(
    AnyOf(Bool(), Section({"cert": Key(Nullable(Str()), None, "CA file to trust"),
                           "insecure": Key(Bool(), False, "do not check the certificate")}))
)  # fmt: skip
_MQTT = Section(
    {
        "uri": Key(Nullable(Str()), None, "broker, mqtt://HOST[:PORT]; null: a lone node"),
        # MQTT v5 (5): with no_local the broker does not echo a node's own updates
        # back to it (less work for the node and the broker per bus message); a
        # broker that refuses v5 gets 3.1.1 (distkv/bus/mqtt.py). 4: 3.1.1 only.
        "mqtt_version": Key(
            OneOf(4, 5), 5, "MQTT protocol version (5: v5, or 3.1.1 if the broker refuses v5)"
        ),
        "keepalive": Key(Int(5, 3600), 15, "seconds between MQTT pings"),
        "min_backoff": Key(Float(0.01), 0.1, "first reconnect delay, seconds"),
        "max_backoff": Key(Float(0.01), 1.0, "longest reconnect delay, seconds"),
        "connect_timeout": Key(Float(0.1), 5.0, "seconds to wait for CONNACK"),
        "close_timeout": Key(Float(0), 2.0, "seconds to flush on shutdown"),
        "max_pending": Key(Nullable(Int(0)), None, "messages queued while the broker is away"),
        "client_id": Key(Nullable(Str()), None, "MQTT client id (default distkv-ROOT-NODE-INSTANCE, one per process)"),
    },
    help="the broker the nodes replicate through",
)
_REPLICATION = Section(
    {
        "heartbeat_ms": Key(Int(10), 1000, "presence heartbeat interval"),
        "repair_delay_ms": Key(Int(0), 300, "wait before asking peers for missed writes"),
        "repair_backoff_ms": Key(Int(0), 1000, "first repair retry delay"),
        "repair_max_backoff_ms": Key(Int(0), 30_000, "longest repair retry delay"),
        "max_repair_ticks": Key(Int(1), 2000, "writes asked for per repair request"),
        "dead_after_ms": Key(Int(100), 10_000, "a silent peer is dead after this"),
        "forget_after_ms": Key(Int(1000), 3_600_000, "a dead peer is forgotten after this"),
        "purge_interval_ms": Key(Int(100), 60_000, "how often tombstones are purged"),
        "max_conflict_records": Key(Int(0), 1000, "conflicts remembered for the error tree"),
    },
    help="replication timing (the defaults suit a LAN)",
)

#: A runner or gateway instance: an entry of ``server.services``, or the whole of an
#: instance file ``INSTANCES/gateway-NAME.cfg`` / ``runner-NAME.cfg`` (distkv/cli/instance.py).
SERVICE = Section(
    {
        "kind": Key(OneOf("runner", "gateway"), None, "what to run (a file: from its name)"),
        "gateway": Key(Nullable(Str()), None, "gateway: its kind (mqtt, owfs, gpio)"),
        "node": Key(Nullable(Str()), None, "runner: jobs pinned to this node (-n)"),
        "group": Key(Nullable(Str()), None, "runner: jobs of this group (-g)"),
        "name": Key(
            Nullable(Str()), None, "runner: its name (default: host name; HOST-NAME in a file)"
        ),
        "hw": Key(Bool(), False, "runner: own this host's hardware (gateways.gpio/owfs)"),
        "auth": Key(AnyValue(), None, "its own login (default connect.auth)"),
        "settings": Key(
            Nullable(OpenSection()),
            None,
            "gateway: its settings, over gateways.KIND (checked by the gateway)",
        ),
    },
    help="a runner or gateway instance",
)
_SERVICE = SERVICE

#: The whole configuration: every key with its type, default and meaning.
SCHEMA = Section(
    {
        "connect": Section(
            {
                "host": Key(Str(), "127.0.0.1", "node to connect to"),
                "port": Key(_PORT, DEFAULT_PORT, "its port"),
                "auth": Key(AnyValue(), None, "login: 'METHOD k=v ...' or a mapping"),
                "ssl": Key(_TLS_CLIENT, None, "TLS: true, or {cert: CA file, insecure}"),
                "name": Key(Nullable(Str()), None, "a name for this client"),
                "init_timeout": Key(Float(0.1), 5, "seconds to connect and be greeted"),
                "servers": Key(
                    Nullable(AnyOf(Str(), ListOf(Str()))),
                    None,
                    'more nodes to fall back on: ["host:port", ...]',
                ),
                "reconnect": Key(Bool(), True, "connect again when the node goes away"),
                "busy_poll": Key(
                    Nullable(Float(0)), None, "µs to poll for a reply (null: 100, 0 on one CPU)"
                ),
            },
            help="how clients (CLI, runners, gateways, peers syncing) reach a node",
        ),
        "server": Section(
            {
                "bind_default": Section(
                    {
                        "host": Key(Str(), "127.0.0.1", "address to listen on"),
                        "port": Key(_PORT, DEFAULT_PORT, "port to listen on"),
                        "ssl": Key(
                            Nullable(Section({"cert": Key(Str(), None, "certificate file"),
                                              "key": Key(Nullable(Str()), None, "key file")})),
                            None,
                            "TLS for clients: {cert: FILE, key: FILE}",
                        ),  # fmt: skip
                    }
                ),
                "mqtt": Key(
                    AnyOf(Nullable(Str()), _MQTT),
                    {"uri": None, "mqtt_version": 5},
                    "the broker to replicate through: a URI or {uri: ..., options};"
                    " without one the node runs alone and needs no broker",
                ),
                "root": Key(Str(), "distkv", "topic prefix: the network's name on the broker"),
                # distkv/server/replication/buslink.py (BusLink._send_held), docs/replication.md
                "bus_coalesce_ms": Key(
                    Float(0),
                    2,
                    "while writes pile up, least ms between two bus messages of this node's"
                    " updates (writes in between travel together)",
                ),
                # distkv/server/replication/held.py, docs/replication.md ("A bus that is down")
                "outage_backlog_mb": Key(
                    Int(1),
                    64,
                    "MiB of this node's updates kept while the broker is away and sent on"
                    " reconnect (past it: repaired by peers)",
                ),
                "advertise": Key(Nullable(Str()), None, "address peers should use for syncing"),
                "state_dir": Key(Nullable(Str()), None, "directory for persistence"),
                "log_dirs": Key(
                    ListOf(Str()),
                    ["/var/lib/distkv", "/var/local/lib"],
                    "`client log dest/save` may write only below these (and state_dir)",
                ),
                "fsync": Key(OneOf("always", "interval", "never"), "interval", "fsync policy"),
                "fsync_interval": Key(Float(0), 1.0, "seconds between fsyncs (interval)"),
                # Bytes the server queues for one client before it cuts off that client's
                # streams with an overflow error (see docs/protocol.md, flow control).
                "window": Key(Int(4096), 4 * 1024 * 1024, "bytes queued per client"),
                "max_message": Key(Int(1024), 4 * 1024 * 1024, "largest request, bytes"),
                # What one client may cost this node (docs/operations.md, "Limits"); read
                # by distkv/server/limits.py. Past one: a one-line error naming the key.
                "limits": Section(
                    {
                        "path_depth": Key(Int(1), 128, "elements in a path"),
                        "path_bytes": Key(Int(64), 8192, "encoded size of one path, bytes"),
                        "value_depth": Key(Int(1), 64, "nesting of lists/maps in a value"),
                        # msgpack reserves the announced elements up front: a message
                        # held open with nested headers costs nesting x array_len x 8
                        "array_len": Key(Int(16), 4096, "elements one list/map may announce"),
                        "login_message": Key(
                            Int(256), 16384, "largest message before the login reply (auth on)"
                        ),
                        "watches": Key(Int(1), 1000, "live watches per connection"),
                        "clients": Key(Int(1), 1000, "connections per node (2 fds each)"),
                        "clients_per_addr": Key(Int(1), 64, "connections per client address"),
                        "script_ms": Key(
                            Int(1), 200, "ms one call of a stored type check or codec may run"
                        ),
                    },
                    help="what one client may cost this node",
                ),
                # Microseconds a connection polls for the next request before sleeping,
                # while its client sends back to back (distkv/busypoll.py).
                "busy_poll": Key(
                    Nullable(Float(0)), None, "µs to poll for a request (null: 50, 0 on one CPU)"
                ),
                "network_key": Key(
                    Nullable(Str()),
                    None,
                    "shared secret (16-64 bytes) that authenticates every replication"
                    " message; the same on every node (null: trust the broker)",
                ),
                "max_clock_ahead_ms": Key(
                    Int(1000),
                    60_000,
                    "bus messages stamped further ahead of our clock are refused",
                ),
                "ready_timeout": Key(Float(0), 5, "seconds a request waits for readiness"),
                "sync_timeout": Key(Float(1), 120, "seconds a join may take"),
                "catchup_timeout": Key(Float(0), 3, "seconds without progress before a restarted node serves what it has"),
                "conflict_records": Key(Int(1), 100, "conflict records kept in the error tree"),
                "replication": _REPLICATION,
                # distkv/server/web.py, docs/web.md
                "web": Section(
                    {
                        "enabled": Key(Bool(), False, "serve the web page and its WebSocket"),
                        "host": Key(Str(), "127.0.0.1", "address to listen on"),
                        "port": Key(Int(0, 65535), 27590, "port to listen on (0: any free)"),
                        "origins": Key(
                            ListOf(Str()),
                            [],
                            "other page origins that may open the WebSocket"
                            " (e.g. https://house.example:8443 behind a proxy)",
                        ),
                        "ssl": Key(
                            Nullable(Section({"cert": Key(Str(), None, "certificate file"),
                                              "key": Key(Nullable(Str()), None, "key file")})),
                            None,
                            "TLS for the page: {cert: FILE, key: FILE}",
                        ),  # fmt: skip
                    },
                    help="the web page (off by default)",
                ),
                "services": Key(
                    ListOf(AnyOf(Str(), _SERVICE)),
                    [],
                    "runners and gateways this node runs in its own process: a mapping,"
                    " or the name of an instance file (gateway-NAME, runner-NAME)",
                ),
            },
            help="the node",
        ),
        "logging": Section(
            {
                "level": Key(
                    OneOf("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL",
                          "debug", "info", "warning", "error", "critical"),
                    "WARNING",
                    "log level",
                )  # fmt: skip
            }
        ),
        "gateways": Key(OpenSection(), {}, "gateways.NAME: each gateway checks its own"),
        "instances": Key(
            Str(),
            "/etc/distkv",
            "directory of the instance files gateway-NAME.cfg and runner-NAME.cfg",
        ),
    }
)

DEFAULTS: dict[str, Any] = defaults(SCHEMA)


def check(cfg: Mapping) -> None:
    """One-line :class:`ConfigError` for the first unknown or ill-typed key."""
    _check(SCHEMA, cfg)


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
            out[k] = copy_tree(v)
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
    if raw == "":
        return parts, ""
    value = yamlsubset.scalar(raw)  # "null", "27586", "127.0.0.1": no PyYAML needed
    if value is not yamlsubset.UNKNOWN:
        return parts, value
    import yaml  # here, not at the top: most commands never need it

    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse value of {option} {key}: {yaml_error(exc)}") from None
    return parts, value


def yaml_error(exc: Exception) -> str:
    """One line for a PyYAML error: where and what. ``str(exc)`` spans several lines,
    quotes the text with a caret under it and calls the file ``"<unicode string>"``."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None or not getattr(exc, "problem", None):
        return " ".join(str(exc).split())
    ctx = f" ({exc.context})" if getattr(exc, "context", None) else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{ctx}"


def set_dotted(cfg: dict, parts: list[str], value: Any) -> None:
    d = cfg
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def read_file(path: str | os.PathLike) -> dict:
    """One YAML config file as a mapping (one-line :class:`ConfigError` otherwise).

    Plain ``key: value`` files are read by :mod:`distkv.yamlsubset`, which gives what
    PyYAML would; only other files import PyYAML (a third of a one-shot command's
    own start-up)."""
    try:
        with open(os.path.expanduser(path)) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except ValueError as exc:  # not UTF-8
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    data = yamlsubset.parse(text)
    if data is None:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {yaml_error(exc)}") from None
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
    cfg = copy_tree(DEFAULTS)
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
    check(cfg)
    return cfg


def server_list(c: Mapping) -> list[tuple[str, int]]:
    """``connect.servers`` (``["host:port", ...]``) or ``connect.host``/``port``."""
    servers = c.get("servers")
    default_port = int(c.get("port") or DEFAULT_PORT)
    if not servers:
        return [(c.get("host") or "127.0.0.1", default_port)]
    if isinstance(servers, str):
        servers = [s for s in servers.replace(",", " ").split() if s]
    out = []
    for s in servers:
        if not isinstance(s, str) or not s:
            raise ConfigError(f"connect.servers: {s!r} is not 'host' or 'host:port'")
        host, sep, port = s.rpartition(":") if s.count(":") == 1 else (s, "", "")
        if not sep:
            host, port = s, ""
        try:
            out.append((host.strip("[]"), int(port) if port else default_port))
        except ValueError:
            raise ConfigError(f"connect.servers: {s!r} has a bad port") from None
    return out


def client_ssl_context(c: Mapping):
    """The TLS context for ``connect.ssl`` (true, or ``{cert: CA file, insecure}``),
    or None for plain TCP; both clients (trio and one-shot) use it."""
    sslcfg = c.get("ssl")
    if not sslcfg:
        return None
    import ssl  # here: a plain-TCP command must not pay for it

    ctx = ssl.create_default_context(
        cafile=sslcfg.get("cert") if isinstance(sslcfg, Mapping) else None
    )
    if isinstance(sslcfg, Mapping) and sslcfg.get("insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_ssl_context(cfg: Any, key: str):
    """The TLS context for a listener (``key``: the config key it came from, e.g.
    ``server.bind_default.ssl``) given ``{cert: FILE, key: FILE}``, or None for plain TCP.
    A file that cannot be loaded is a ConfigError naming the key and the file."""
    if not cfg:
        return None
    import ssl  # here: a plain-TCP node must not pay for it

    if not isinstance(cfg, Mapping) or not cfg.get("cert"):
        raise ConfigError(f"{key} needs cert (and key) file names")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cfg["cert"], cfg.get("key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}: cannot load {cfg['cert']}: {exc}") from None
    return ctx
