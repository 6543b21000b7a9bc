"""Home Assistant MQTT discovery payloads (pure).

For each selected entity the gateway publishes, retained, at
``<prefix>/<component>/<gateway>_<entity>/config`` a JSON config that points Home
Assistant at the *gateway's* topics, not the device's: HA reads the state the gateway
publishes from the tree and sends its commands to the gateway, which writes them to
the entity's ``desired`` entry and forwards them to the device. So HA controls the
device through DistKV and sees what the tree sees. Components (HA's documented
required fields in brackets): ``switch`` [command_topic], ``sensor`` [state_topic],
``binary_sensor`` [state_topic]. Availability is the gateway's own status topic
(and the device's, if it has one): HA shows the entity unavailable when either is
offline.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .entity import Devices, EntitySpec

__all__ = ["COMPONENTS", "default_component", "discovery_config"]

COMPONENTS = ("switch", "sensor", "binary_sensor")


def default_component(kind: str, has_command: bool) -> str:
    """An entity's HA component from its codec's kind and whether it takes commands."""
    if has_command:
        return "switch"
    return "binary_sensor" if kind == "bool" else "sensor"


def object_id(text: str) -> str:
    """HA object ids are ``[a-zA-Z0-9_-]``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def discovery_config(devices: Devices, spec: EntitySpec) -> tuple[str, dict[str, Any]]:
    """``(topic, config)`` of one entity."""
    component = spec.component or default_component(spec.codec.kind, spec.command is not None)
    gw = object_id(devices.gateway_topic)
    uid = f"{gw}_{object_id(spec.name)}"
    availability = [{"topic": devices.status_topic}]
    if spec.availability:
        availability.append({"topic": devices.ha_topic(spec, "availability")})
    cfg: dict[str, Any] = {
        "name": spec.name,
        "unique_id": uid,
        "object_id": uid,
        "state_topic": devices.ha_topic(spec, "state"),
        "availability": availability,
        "availability_mode": "all",
        "device": {"identifiers": [uid], "name": spec.name},
    }
    if component == "switch":
        cfg["command_topic"] = devices.ha_topic(spec, "set")
        cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
        cfg["state_on"], cfg["state_off"] = "ON", "OFF"
    elif component == "binary_sensor":
        cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
    elif spec.unit:
        cfg["unit_of_measurement"] = spec.unit
    if component == "sensor" and spec.codec.kind == "number":
        cfg["state_class"] = "measurement"
    return f"{devices.discovery}/{component}/{uid}/config", cfg
