"""An MQTT bus that tests can cut and crash (:class:`~distkv.testing.busfaults.FaultInjection`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from distkv.bus.mqtt import MqttBus, open_mqtt_bus

from .busfaults import FaultInjection

__all__ = ["FaultyMqttBus", "open_faulty_mqtt_bus"]


class FaultyMqttBus(FaultInjection, MqttBus):
    """:class:`~distkv.bus.mqtt.MqttBus` with ``drop_connection``, ``crash`` and
    ``resubscribe_all``."""


def open_faulty_mqtt_bus(
    uri: str, root: str, node: str, **options: Any
) -> AbstractAsyncContextManager[FaultyMqttBus]:
    """:func:`~distkv.bus.mqtt.open_mqtt_bus` building a :class:`FaultyMqttBus`."""
    return open_mqtt_bus(uri, root, node, bus_class=FaultyMqttBus, **options)  # type: ignore[return-value]
