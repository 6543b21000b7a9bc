"""MQTT version handling: a bus asked for v5 on a broker that speaks only 3.1.1 steps
down and works; on a v5 broker, ``no_local`` keeps a node's own messages away from it
(replication relies on that to not read its own updates back)."""

from __future__ import annotations

import functools

import pytest
import trio

from distkv.bus import Message
from distkv.bus.mqtt import open_mqtt_bus
from distkv.testing.mosquitto import Mosquitto

TIMEOUT = 10


async def _read_packet(stream: trio.SocketStream, buf: bytearray) -> tuple[int, bytes] | None:
    """One MQTT packet from ``stream``: (first byte, body); None at EOF."""
    while True:
        if len(buf) >= 2:
            length, mult, pos = 0, 1, 1
            while pos < len(buf):
                b = buf[pos]
                length += (b & 127) * mult
                mult *= 128
                pos += 1
                if not b & 128:
                    if len(buf) >= pos + length:
                        packet = (buf[0], bytes(buf[pos : pos + length]))
                        del buf[: pos + length]
                        return packet
                    break
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data


class OldBroker:
    """A broker that speaks only MQTT 3.1.1, as far as one client needs: it answers a
    v5 CONNECT with "unacceptable protocol version" (what the 3.1.1 spec asks for) and
    closes; for 3.1.1 it acknowledges subscriptions and QoS 1 publications and sends
    every publication back to the one client (as QoS 0) if it subscribed to anything."""

    def __init__(self) -> None:
        self.versions: list[int] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        subscribed = False
        async with stream:
            packet = await _read_packet(stream, buf)
            if packet is None or packet[0] >> 4 != 1:
                return
            level = packet[1][6]  # after b"\x00\x04MQTT"
            self.versions.append(level)
            if level != 4:
                await stream.send_all(b"\x20\x02\x00\x01")
                return
            await stream.send_all(b"\x20\x02\x00\x00")
            while (packet := await _read_packet(stream, buf)) is not None:
                first, body = packet
                kind = first >> 4
                if kind == 8:  # SUBSCRIBE: grant what was asked
                    subscribed = True
                    await stream.send_all(b"\x90\x03" + body[:2] + body[-1:])
                elif kind == 3:  # PUBLISH
                    qos = (first >> 1) & 3
                    tlen = 2 + int.from_bytes(body[:2], "big")
                    topic, rest = body[:tlen], body[tlen:]
                    if qos:
                        await stream.send_all(b"\x40\x02" + rest[:2])
                        rest = rest[2:]
                    if subscribed:
                        out = topic + rest
                        await stream.send_all(bytes([0x30, len(out)]) + out)
                elif kind == 12:  # PINGREQ
                    await stream.send_all(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return


async def test_v5_steps_down_to_311_on_an_old_broker() -> None:
    broker = OldBroker()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, broker.handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with open_mqtt_bus(
            f"mqtt://127.0.0.1:{port}", "m", "a", mqtt_version=5, min_backoff=0.02
        ) as bus:
            with trio.fail_after(TIMEOUT):
                await bus.wait_connected()
            assert broker.versions == [5, 4]
            assert bus.mqtt_version == 4
            async with bus.subscribe("t/+", qos=0) as sub:
                await bus.publish("t/x", b"hello")
                with trio.fail_after(TIMEOUT):
                    await bus.drain()  # the broker's PUBACK came back
                    msg = await sub.receive()
            assert msg == Message("t/x", b"hello", False)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("no_local", [True, False])
async def test_no_local_on_v5(private_broker: Mosquitto, no_local: bool) -> None:
    """With ``no_local`` a node gets the others' messages on a topic pattern but not its
    own; without it, both."""
    async with (
        open_mqtt_bus(private_broker.uri, "nl", "a", mqtt_version=5) as a,
        open_mqtt_bus(private_broker.uri, "nl", "b", mqtt_version=5) as b,
    ):
        async with a.subscribe("update/+", qos=0, no_local=no_local) as sub:
            with trio.fail_after(TIMEOUT):
                await a.wait_connected()
                await b.wait_connected()
            await a.publish("update/a", b"mine")
            await a.drain()
            await b.publish("update/b", b"theirs")
            got = []
            with trio.fail_after(TIMEOUT):
                while not got or got[-1].topic != "update/b":
                    got.append(await sub.receive())
    topics = [m.topic for m in got]
    assert topics == (["update/b"] if no_local else ["update/a", "update/b"])
