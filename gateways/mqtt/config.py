"""The MQTT gateway's configuration: schema, templates, and the check that runs before
anything connects (pure). Every problem is one line naming the key
(``gateways.mqtt.entities.plug1.qos: 2 is not one of 0, 1``).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distkv.exceptions import ConfigError
from distkv.schema import Bool, Int, Key, Nullable, OneOf, OpenSection, Section, Str, check
from distkv.util import P

from .codec import CODECS, get_codec
from .discovery import COMPONENTS
from .entity import EntitySpec

__all__ = ["DEFAULTS", "SCHEMA", "TEMPLATES", "GatewayConfig", "check_config"]

#: Ready-made topic layouts; ``{device}`` (and ``{channel}``) come from the entity.
TEMPLATES: dict[str, dict[str, Any]] = {
    "tasmota": {  # a relay: Tasmota's default topics (FullTopic %prefix%/%topic%/)
        "state": "stat/{device}/POWER",
        "command": "cmnd/{device}/POWER",
        "availability": "tele/{device}/LWT",
        "codec": "onoff",
    },
    "tasmota_sensor": {  # one field of the periodic tele/<id>/SENSOR JSON
        "state": "tele/{device}/SENSOR",
        "availability": "tele/{device}/LWT",
        "codec": "float",
    },
    "shelly": {  # Shelly gen1 relay
        "state": "shellies/{device}/relay/{channel}",
        "command": "shellies/{device}/relay/{channel}/command",
        "availability": "shellies/{device}/online",
        "codec": "onoff_lower",
    },
    "zigbee2mqtt": {  # a switch/light: JSON state, JSON /set command
        "state": "zigbee2mqtt/{device}",
        "field": "state",
        "command": "zigbee2mqtt/{device}/set",
        "command_field": "state",
        "availability": "zigbee2mqtt/{device}/availability",
        "codec": "onoff",
    },
    "zigbee2mqtt_sensor": {  # one field of a sensor's JSON state
        "state": "zigbee2mqtt/{device}",
        "availability": "zigbee2mqtt/{device}/availability",
        "codec": "float",
    },
}

_TOPIC = Nullable(Str())
ENTITY = Section(
    {
        "path": Key(Str(), None, "tree path of the entity (its state/desired/online below)"),
        "template": Key(Nullable(OneOf(*TEMPLATES)), None, "a ready-made layout"),
        "device": Key(Nullable(Str()), None, "the device's id/name in the template"),
        "channel": Key(Int(0, 15), 0, "relay channel (shelly)"),
        "state": Key(_TOPIC, None, "state topic, device -> tree"),
        "field": Key(Nullable(Str()), None, "dotted JSON field of the state payload"),
        "command": Key(_TOPIC, None, "command topic, tree -> device (never retained)"),
        "command_field": Key(Nullable(Str()), None, "send JSON {field: value}"),
        "availability": Key(_TOPIC, None, "the device's online/offline topic"),
        "codec": Key(Nullable(OneOf(*CODECS)), None, "payload codec (default str)"),
        "component": Key(Nullable(OneOf(*COMPONENTS)), None, "Home Assistant component"),
        "unit": Key(Nullable(Str()), None, "unit of a sensor (Home Assistant)"),
        "discovery": Key(Bool(), False, "announce it to Home Assistant"),
    }
)
SCHEMA = Section(
    {
        "uri": Key(Str(), "mqtt://localhost:1883", "the devices' broker, mqtt[s]://"),
        "name": Key(Nullable(Str()), None, "gateway name (default: the section's name)"),
        "client_id": Key(Nullable(Str()), None, "MQTT client id (default distkv-gw-HOST-NAME)"),
        "qos": Key(OneOf(0, 1), 1, "QoS of subscriptions and publications"),
        "max_pending": Key(Int(1, 60_000), 10_000, "messages queued while the broker is away"),
        "gateway_topic": Key(
            _TOPIC, None, "the gateway's own topics (default distkv/gateway/NAME)"
        ),
        "tls": Key(
            Nullable(
                Section(
                    {
                        "ca": Key(Nullable(Str()), None, "CA file to trust"),
                        "cert": Key(Nullable(Str()), None, "client certificate"),
                        "key": Key(Nullable(Str()), None, "its key"),
                        "insecure": Key(Bool(), False, "do not check the name"),
                    }
                )
            ),
            None,
            "TLS options for mqtts://",
        ),  # fmt: skip
        "homeassistant": Key(Nullable(Str()), "homeassistant", "HA discovery prefix"),
        "entities": Key(OpenSection(), {}, "NAME: an entity (checked one by one)"),
        # mirror mode: a subtree <-> a topic tree, for plain setups (no devices)
        "topic": Key(_TOPIC, None, "mirror: MQTT prefix (null: no mirror)"),
        "path": Key(Str(), "home", "mirror: DistKV subtree"),
        "retain": Key(Bool(), True, "mirror: publish retained"),
    }
)

DEFAULTS: dict[str, Any] = {
    k: (f.default if not isinstance(f, Section) else {}) for k, f in SCHEMA.fields.items()
}


@dataclass(frozen=True)
class GatewayConfig:
    uri: str
    name: str
    client_id: str
    qos: int
    max_pending: int
    gateway_topic: str
    tls: dict | None
    discovery: str | None
    entities: list[EntitySpec]
    mirror_topic: str | None
    mirror_path: tuple
    retain: bool


def check_topic(topic: Any, where: str, *, wildcards: bool = False) -> str:
    if not isinstance(topic, str) or not topic:
        raise ConfigError(f"{where}: a topic must be a non-empty string, not {topic!r}")
    if "\0" in topic or topic.startswith("/") or topic.endswith("/"):
        raise ConfigError(f"{where}: bad topic {topic!r}")
    if not wildcards and ("+" in topic or "#" in topic):
        raise ConfigError(f"{where}: {topic!r}: wildcards (+, #) are not allowed here")
    return topic


def check_config(cfg: Mapping, section: str = "mqtt") -> GatewayConfig:
    """Check the gateway's section (defaults merged in); ConfigError naming the key."""
    where = f"gateways.{section}"
    check(SCHEMA, cfg, where + ".")
    c = {**DEFAULTS, **cfg}
    name = c["name"] or section
    client_id = c["client_id"] or f"distkv-gw-{socket.gethostname()}-{name}"
    gw_topic = check_topic(c["gateway_topic"] or f"distkv/gateway/{name}", f"{where}.gateway_topic")
    if c["uri"].split(":", 1)[0] not in ("mqtt", "mqtts"):
        raise ConfigError(f"{where}.uri: must be mqtt:// or mqtts://, not {c['uri']!r}")
    if c["tls"] is not None and not c["uri"].startswith("mqtts:"):
        raise ConfigError(f"{where}.tls: needs an mqtts:// uri")
    specs = []
    for ename, ecfg in (c["entities"] or {}).items():
        check(ENTITY, ecfg, f"{where}.entities.{ename}.")
        specs.append(_entity(str(ename), {**{k: f.default for k, f in ENTITY.fields.items()},
                                          **ecfg}, f"{where}.entities.{ename}"))  # fmt: skip
    seen: dict[tuple, str] = {}
    for s in specs:
        for p in (s.state_path, s.desired_path, s.online_path):
            if p in seen:
                raise ConfigError(f"{where}.entities.{s.name}.path: also used by {seen[p]}")
            seen[p] = s.name
    mirror = c["topic"]
    if mirror is not None:
        check_topic(mirror, f"{where}.topic")
    try:
        mpath = P(c["path"])
    except Exception as exc:
        raise ConfigError(f"{where}.path: {exc}") from None
    if mirror is None and not specs:
        raise ConfigError(f"{where}: nothing to do (no entities, and no mirror topic)")
    return GatewayConfig(
        uri=c["uri"], name=name, client_id=client_id, qos=c["qos"],
        max_pending=c["max_pending"], gateway_topic=gw_topic, tls=c["tls"],
        discovery=c["homeassistant"], entities=specs, mirror_topic=mirror,
        mirror_path=mpath, retain=c["retain"],
    )  # fmt: skip


def _entity(name: str, e: dict, where: str) -> EntitySpec:
    if "/" in name or "+" in name or "#" in name:
        raise ConfigError(f"{where}: an entity name must be one topic level")
    if e["template"] is not None:
        if not e["device"]:
            raise ConfigError(f"{where}.device: the {e['template']} template needs a device")
        for k, v in TEMPLATES[e["template"]].items():
            if e.get(k) is None:
                e[k] = v.format(device=e["device"], channel=e["channel"])
        if e["template"].endswith("_sensor") and not e["field"]:
            raise ConfigError(f"{where}.field: the {e['template']} template needs a field")
    if e["path"] is None:
        raise ConfigError(f"{where}.path: every entity needs a tree path")
    try:
        path = tuple(P(e["path"]))
    except Exception as exc:
        raise ConfigError(f"{where}.path: {exc}") from None
    if not path:
        raise ConfigError(f"{where}.path: must not be the root")
    for k in ("state", "command", "availability"):
        if e[k] is not None:
            check_topic(e[k], f"{where}.{k}")
    if e["state"] is None and e["command"] is None:
        raise ConfigError(f"{where}: needs a state or a command topic (or a template)")
    if e["command"] is not None and e["command"] in (e["state"], e["availability"]):
        raise ConfigError(f"{where}.command: must differ from the state/availability topic")
    codec = get_codec(e["codec"] or "str")
    if e["component"] == "switch" and e["command"] is None:
        raise ConfigError(f"{where}.component: a switch needs a command topic")
    return EntitySpec(
        name=name, path=path, codec=codec, state=e["state"], field=e["field"],
        command=e["command"], command_field=e["command_field"],
        availability=e["availability"], component=e["component"], unit=e["unit"],
        discovery=e["discovery"],
    )  # fmt: skip
