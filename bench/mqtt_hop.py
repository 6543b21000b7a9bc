"""A bare paho -> mosquitto -> paho hop, two processes: the floor of the bus leg.

``python -m bench.mqtt_hop sub HOST PORT TOPIC N`` subscribes (QoS 0, as the
replication's update subscription), prints ``ready`` once the broker confirmed, and
after N messages prints one line of JSON: the one-way latencies in ms. Each payload is
the publisher's ``time.perf_counter()`` (CLOCK_MONOTONIC: one clock for all processes
of a machine). ``python -m bench.mqtt_hop pub HOST PORT TOPIC N PACE_S`` publishes N
messages (QoS 1, as the replication does), one every PACE_S seconds. Both sockets have
TCP_NODELAY, as the bus's. No trio, no DistKV: whatever a cross-node watch costs above
this hop plus two client hops is the cost of DistKV.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def _client() -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)

    def nodelay(client, userdata, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    c.on_socket_open = nodelay
    return c


def sub(host: str, port: int, topic: str, n: int) -> None:
    c = _client()
    lat: list[float] = []

    def on_connect(client, userdata, flags, reason, properties):
        client.subscribe(topic, qos=0)

    def on_subscribe(client, userdata, mid, codes, properties):
        print("ready", flush=True)

    def on_message(client, userdata, msg):
        lat.append((time.perf_counter() - struct.unpack("!d", msg.payload)[0]) * 1000)
        if len(lat) >= n:
            client.disconnect()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect(host, port)
    c.loop_forever()
    print(json.dumps(lat), flush=True)


def pub(host: str, port: int, topic: str, n: int, pace: float) -> None:
    c = _client()
    c.connect(host, port)
    c.loop_start()
    nxt = time.perf_counter()
    for _ in range(n):
        nxt += pace
        time.sleep(max(0.0, nxt - time.perf_counter()))
        c.publish(topic, struct.pack("!d", time.perf_counter()), qos=1)
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


if __name__ == "__main__":
    mode, host, port, topic, n = sys.argv[1:6]
    if mode == "sub":
        sub(host, int(port), topic, int(n))
    else:
        pub(host, int(port), topic, int(n), float(sys.argv[6]))
