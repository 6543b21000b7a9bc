"""The MQTT gateway: a DistKV subtree mirrored to MQTT topics, both ways.

Devices and home-automation software that speak MQTT publish ``"ON"``, ``"21.5"`` on
topics below ``topic``; the gateway writes them below ``path`` as the gateway's user,
whose codec (if any) makes typed values of them. Every change below ``path``, from
anywhere in the network, is published back (retained by default). The decisions are in
:mod:`.bridge`; this module connects the client, the broker and the bridge.

Configuration (``gateways.mqtt``)::

    uri: mqtt://localhost:1883   # the devices' broker (may be the replication broker)
    topic: home                  # MQTT prefix
    path: home                   # DistKV subtree
    retain: true                 # publish retained, so late subscribers get the state
    qos: 1
    name: null                   # MQTT client name (default: distkv-gw-HOST)
    max_pending: 10000           # messages queued while the broker is away

The broker may go away: the gateway keeps retrying and the tree keeps serving; changes
made meanwhile are published when it is back (QoS 1, queued by the bus; if more pile
up than the bus may queue, the whole state is published again once it is back).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import trio

from distkv.bus.base import BusOverflowError
from distkv.bus.mqtt import open_mqtt_bus
from distkv.exceptions import DistKVError
from distkv.util import NotGiven, P

from .bridge import Bridge

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "uri": "mqtt://localhost:1883",
    "topic": "home",
    "path": "home",
    "retain": True,
    "qos": 1,
    "name": None,
    "max_pending": 10_000,  # messages queued for the broker (e.g. while it is away)
}

__all__ = ["DEFAULTS", "Bridge", "serve"]


async def serve(client, cfg: dict, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway until cancelled; started once the tree state is published and
    the MQTT subscription is made."""
    base = P(cfg["path"]) if isinstance(cfg["path"], str) else tuple(cfg["path"])
    bridge = Bridge()
    name = cfg.get("name") or f"distkv-gw-{socket.gethostname()}"
    qos, retain = int(cfg["qos"]), bool(cfg["retain"])
    async with open_mqtt_bus(
        cfg["uri"], cfg["topic"], name, client_id=name, max_pending=int(cfg["max_pending"])
    ) as bus:
        dropped = 0

        def publish(items) -> None:
            nonlocal dropped
            for topic, payload in items:
                try:
                    bus.publish_nowait(topic, payload, qos=qos, retain=retain)
                except BusOverflowError:
                    # the broker has been away for a long time: the whole state is
                    # published again when it is back (see _resync), so drop this
                    if not dropped:
                        logger.warning("MQTT queue full: will republish everything later")
                    dropped += 1

        async def resync() -> None:
            nonlocal dropped
            while True:
                await bus.wait_disconnected()
                await bus.wait_connected()
                while dropped:  # again if more were dropped meanwhile
                    dropped = 0
                    for topic, payload in bridge.initial():  # waiting for room this time
                        await bus.publish(topic, payload, qos=qos, retain=retain)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(resync)
            ready = trio.Event()
            nursery.start_soon(_tree_to_mqtt, client, base, bridge, publish, ready)
            await ready.wait()
            publish(bridge.initial())
            async with bus.subscribe("#") as sub:
                task_status.started()
                async for msg in sub:
                    if msg.lost:
                        logger.warning("MQTT gateway fell behind: %d messages lost", msg.lost)
                    action = bridge.mqtt_message(msg.topic, msg.payload, msg.retained)
                    if action is not None:
                        publish(await _write(client, base, bridge, *action))


async def _write(client, base: tuple, bridge: Bridge, rel: tuple, value: Any) -> list:
    """Write one MQTT message into the tree; returns what still needs publishing."""
    bridge.begin_write(rel)
    tock = None
    try:
        if value is NotGiven:
            res = await client.delete(base + rel)
        else:
            res = await client.set(base + rel, value)
        tock = res.get("tock")
    except DistKVError as exc:
        # a codec or type check refused it, or an ACL: say so, keep going
        logger.warning("MQTT %s: not stored: %s: %s", "/".join(rel), type(exc).__name__, exc)
    return bridge.end_write(rel, tock)


async def _tree_to_mqtt(client, base: tuple, bridge: Bridge, publish, ready: trio.Event):
    async with client.watch(base, fetch=True) as watch:
        async for ev in watch:
            if ev.get("state") == "uptodate":
                ready.set()
                continue
            if "codec_error" in ev:
                logger.warning("%s: %s", base + tuple(ev.path), ev.codec_error)
            publish(bridge.tree_event(tuple(ev.path), ev.get("value", NotGiven), ev.get("tock")))
