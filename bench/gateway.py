"""MQTT gateway benchmarks (#9): device messages into the tree, latency both ways at
realistic pacing, RSS of a gateway process with 200 entities.

The gateway (``gateways.mqtt.serve``) runs in this process against a bench server and a
private mosquitto; "devices" are an MQTT bus client in this process, so both ends of a
latency sample are read on the same clock. Every gateway row has a baseline row of the
same run: the raw bus publish -> subscribe through the same broker, a plain set ->
watch on the same server, and the same gateway process with one entity.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import trio

from . import Result, at_least, at_most, benchmark
from .cluster import _broker
from .measure import percentile
from .procs import HOST, rss_bytes

NENT = 200
PACE_MS = (10, 30)  # one message every 10-30 ms (realistic pacing, not ping-pong)


def _cfg(uri: str, n: int, tag: str) -> dict:
    """``n`` Tasmota-like int entities ``dev/eI/state`` -> ``b.gw.eI.state``, with
    commands on ``dev/eI/cmd``."""
    ents = {
        f"e{i}": {
            "path": f"b.{tag}.e{i}",
            "state": f"dev{tag}/e{i}/state",
            "command": f"dev{tag}/e{i}/cmd",
            "codec": "int",
        }
        for i in range(n)
    }
    return {
        "uri": uri,
        "name": f"bench{tag}",
        "client_id": f"bench-gw-{tag}-{os.getpid()}",
        "entities": ents,
    }


_PUBLISHER = """
import sys
import paho.mqtt.client as m
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
k = int(sys.argv[5]) if len(sys.argv) > 5 else 1  # topic.format(i % k): k devices in turn
c = m.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub-" + topic.replace("/", "-"))
c.max_inflight_messages_set(0)
c.connect(host, port)
c.loop_start()
for i in range(n):
    info = c.publish(topic.format(i % k), str(i), qos=1)
info.wait_for_publish(60)
c.disconnect()
c.loop_stop()
"""


async def _publish_burst(broker, topic: str, n: int, done: trio.Event, k: int = 1) -> None:
    """A device process (paho, its own interpreter) publishes 0..n-1 on ``topic`` as
    fast as it can (on ``topic.format(i % k)``: ``k`` devices in turn); returns once
    ``done`` is set (the receiving side saw the last)."""
    argv = [sys.executable, "-c", _PUBLISHER, broker.host, str(broker.port), topic, str(n), str(k)]
    with trio.fail_after(30):
        await trio.run_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        await done.wait()


async def _uptodate(it) -> None:
    async for m in it:
        if m.get("state") == "uptodate":
            return


async def _paced(n: int, send, arrived: dict, timeout: float) -> list[float]:
    """Send ``n`` values 0..n-1 on a 10-30 ms clock without waiting for them; latencies
    (ms, sorted) from before each send until ``arrived[i]`` was stamped. Done once the
    last has arrived: the gateway writes only the newest value of an entry whose
    previous write is still in flight, so a value may be skipped (not counted)."""
    rng = random.Random(9)
    sent: dict[int, float] = {}
    with trio.fail_after(timeout):
        t = trio.current_time()
        for i in range(n):
            sent[i] = time.perf_counter()
            await send(i)
            t += rng.uniform(*PACE_MS) / 1000
            await trio.sleep_until(t)
        while n - 1 not in arrived:
            await trio.sleep(0.01)
    return sorted((arrived[i] - sent[i]) * 1000 for i in range(n) if i in arrived)


_ROWS = [
    ("gateway: device messages into the tree", "msg/s", at_least(5000)),
    (f"gateway: device messages into the tree, {NENT} devices in turn", "msg/s", at_least(5000)),
    ("baseline: raw bus publish -> subscribe", "msg/s", None),
    ("gateway: device publish -> tree watch p50, paced", "ms", at_most(1.5)),
    ("gateway: device publish -> tree watch p99, paced", "ms", at_most(10)),
    ("gateway: set desired -> device command p50, paced", "ms", at_most(1.5)),
    ("gateway: set desired -> device command p99, paced", "ms", at_most(10)),
    ("baseline: bus publish -> subscribe p50 / p99, paced", "ms", None),
    ("baseline: set -> watch p50 / p99, paced", "ms", None),
    ("baseline: bus hop p50 + set -> watch p50 (both legs of either gateway path)", "ms", None),
]


@benchmark("gw_mqtt", group="gateway", rows=_ROWS, timeout=60)
async def bench_gw_mqtt(ctx) -> list[Result]:
    """The MQTT gateway with 200 entities: a burst of device messages until the tree has
    the last one; then device -> watcher and set -> device latencies at one message every
    10-30 ms; baselines: the bare bus and a plain set -> watch, same broker and server."""
    from distkv.bus.mqtt import open_mqtt_bus
    from distkv.util import P
    from gateways import mqtt as gw

    burst = ctx.scale(5000, 1000)  # below the gateway's 10,000-message queue
    nlat = ctx.scale(250, 50)
    out: list[Result] = []
    async with (
        _broker() as broker,
        ctx.server("bench-gw") as p,
        ctx.client(p) as gwc,
        ctx.client(p) as watcher,
        open_mqtt_bus(broker.uri, "", "dev", client_id=f"bench-dev-{os.getpid()}") as dev,
        open_mqtt_bus(broker.uri, "", "obs", client_id=f"bench-obs-{os.getpid()}") as obs,
    ):
        with trio.fail_after(10):
            await dev.wait_connected()
            await obs.wait_connected()
        async with trio.open_nursery() as nursery:
            cfg = gw.check_config(_cfg(broker.uri, NENT, "gw"))
            await nursery.start(gw.serve, gwc, cfg)

            # --- throughput: a device process publishing a burst on one topic, raw to a
            # bus subscriber, then through the gateway; first to last arrival
            async def raw_rate() -> float:
                got = trio.Event()
                stamps: list[float] = []

                def handler(msgs) -> None:
                    stamps.extend(time.perf_counter() for _ in msgs)
                    if len(stamps) >= burst:
                        got.set()

                async with obs.subscribe("raw/x", qos=1, handler=handler):
                    await obs.wait_connected()
                    await _publish_burst(broker, "raw/x", burst, got)
                return (burst - 1) / (stamps[burst - 1] - stamps[0])

            base_rate = await raw_rate()
            async with watcher.watch(P("b.gw.e0.state"), fetch=True, max_depth=0) as w:
                it = w.__aiter__()
                await _uptodate(it)
                got = trio.Event()
                t: dict[int, float] = {}

                async def tree_side(*, task_status=trio.TASK_STATUS_IGNORED):
                    task_status.started()
                    async for m in it:
                        v = m.get("value")
                        if isinstance(v, int):
                            t.setdefault(v, time.perf_counter())
                            if v == burst - 1:
                                got.set()
                                return

                async with trio.open_nursery() as n:
                    await n.start(tree_side)
                    await _publish_burst(broker, "devgw/e0/state", burst, got)
                first = min(t.values())
                gw_rate = (burst - 1) / (t[burst - 1] - first)
            out.append(
                Result(
                    _ROWS[0][0],
                    gw_rate,
                    "msg/s",
                    _ROWS[0][2],
                    note=f"{burst} QoS 1 messages on one topic from a paho process, first to "
                    f"last in the tree; {len(t)} values written, the others superseded while "
                    "a write of the entry was in flight",
                )
            )

            # --- the same burst spread over all devices in turn: (nearly) every message
            # is its own write, many in flight at once
            async with watcher.watch(P("b.gw"), fetch=True) as w:
                it = w.__aiter__()
                await _uptodate(it)
                got = trio.Event()
                finals = {f"e{j}": max(range(j, burst, NENT)) for j in range(min(NENT, burst))}
                stamps: list[float] = []

                async def tree_side2(*, task_status=trio.TASK_STATUS_IGNORED):
                    task_status.started()
                    async for m in it:
                        path = tuple(m.get("path") or ())
                        if len(path) < 2 or path[-1] != "state":
                            continue
                        stamps.append(time.perf_counter())
                        if finals.get(path[-2]) == m.get("value"):
                            del finals[path[-2]]
                            if not finals:
                                got.set()
                                return

                async with trio.open_nursery() as n:
                    await n.start(tree_side2)
                    await _publish_burst(broker, "devgw/e{}/state", burst, got, NENT)
                all_rate = (burst - 1) / (stamps[-1] - stamps[0])
            out.append(
                Result(
                    _ROWS[1][0],
                    all_rate,
                    "msg/s",
                    _ROWS[1][2],
                    note=f"{burst} messages, device i % {NENT}; {len(stamps)} values written",
                )
            )
            out.append(
                Result(_ROWS[2][0], base_rate, "msg/s", note="same publisher process and broker")
            )

            # --- device publish -> tree watch
            arrived: dict[int, float] = {}
            async with watcher.watch(P("b.gw.e0.state"), fetch=True, max_depth=0) as w:
                it = w.__aiter__()
                await _uptodate(it)

                async def collect(*, task_status=trio.TASK_STATUS_IGNORED):
                    task_status.started()
                    async for m in it:
                        v = m.get("value")
                        if isinstance(v, int) and v >= 1_000_000:
                            arrived.setdefault(v - 1_000_000, time.perf_counter())

                async with trio.open_nursery() as n:
                    await n.start(collect)
                    up = await _paced(
                        nlat,
                        lambda i: dev.publish("devgw/e0/state", str(1_000_000 + i).encode(), qos=1),
                        arrived,
                        30,
                    )
                    n.cancel_scope.cancel()

            # --- set desired -> device command
            arrived = {}

            def on_cmd(msgs) -> None:
                for m in msgs:
                    arrived.setdefault(int(m.payload), time.perf_counter())

            async with obs.subscribe("devgw/e1/cmd", qos=1, handler=on_cmd):
                await obs.wait_connected()
                down = await _paced(
                    nlat, lambda i: watcher.set(P("b.gw.e1.desired"), i), arrived, 30
                )
            nursery.cancel_scope.cancel()

        # --- baselines at the same pacing: bus alone, set -> watch alone
        arrived = {}

        def on_raw(msgs) -> None:
            for m in msgs:
                arrived.setdefault(int(m.payload), time.perf_counter())

        async with obs.subscribe("rawlat/x", qos=1, handler=on_raw):
            await obs.wait_connected()
            bus_lat = await _paced(
                nlat, lambda i: dev.publish("rawlat/x", str(i).encode(), qos=1), arrived, 30
            )
        arrived = {}
        async with watcher.watch(P("b.plain.x"), fetch=True, max_depth=0) as w:
            it = w.__aiter__()
            await _uptodate(it)

            async def collect2(*, task_status=trio.TASK_STATUS_IGNORED):
                task_status.started()
                async for m in it:
                    v = m.get("value")
                    if isinstance(v, int):
                        arrived.setdefault(v, time.perf_counter())

            async with trio.open_nursery() as n:
                await n.start(collect2)
                set_lat = await _paced(nlat, lambda i: gwc.set(P("b.plain.x"), i), arrived, 30)
                n.cancel_scope.cancel()

    def pair(xs):
        return f"{percentile(xs, 50):.3f} / {percentile(xs, 99):.3f}"

    note = f"{nlat} messages, one every {PACE_MS[0]}-{PACE_MS[1]} ms"
    for (name, unit, tgt), xs, q in (
        (_ROWS[3], up, 50),
        (_ROWS[4], up, 99),
        (_ROWS[5], down, 50),
        (_ROWS[6], down, 99),
    ):
        skipped = f", {nlat - len(xs)} superseded" if len(xs) < nlat else ""
        out.append(
            Result(
                name, percentile(xs, q), unit, tgt, note=f"{note}, max {xs[-1]:.2f} ms{skipped}"
            )
        )
    out.append(
        Result(
            _ROWS[7][0], percentile(bus_lat, 50), "ms", note=f"p50 / p99 {pair(bus_lat)}; {note}"
        )
    )
    out.append(
        Result(
            _ROWS[8][0], percentile(set_lat, 50), "ms", note=f"p50 / p99 {pair(set_lat)}; {note}"
        )
    )
    # Each gateway path is one bus hop plus one set -> watch (device -> mosquitto ->
    # gateway -> server -> watcher; setter -> server -> gateway -> mosquitto -> device):
    # four process hops. Their sum is what the gateway rows compare against.
    out.append(
        Result(
            _ROWS[9][0],
            percentile(bus_lat, 50) + percentile(set_lat, 50),
            "ms",
            note="sum of the two rows above; the bare floor of the same four hops is "
            "echo_paced's round trip p50 + paho hop p50",
        )
    )
    return out


_RSS_ROWS = [
    (f"gateway process RSS, {NENT} entities", "MB", at_most(40)),
    ("baseline: gateway process RSS, 1 entity", "MB", None),
]


@benchmark("gw_rss", group="gateway", rows=_RSS_ROWS, timeout=40)
async def bench_gw_rss(ctx) -> list[Result]:
    """``python -m gateways mqtt`` as its own process, serving 200 entities (all
    subscribed, 200 desired watches), VmRSS once it is running and has taken one message
    per entity; baseline: the same process with one entity."""
    from distkv.bus.mqtt import open_mqtt_bus

    rss = {}
    async with (
        _broker() as broker,
        ctx.server("bench-gwrss") as p,
        open_mqtt_bus(broker.uri, "", "dev", client_id=f"bench-rssdev-{os.getpid()}") as dev,
    ):
        for n, tag in ((NENT, "big"), (1, "one")):
            path = os.path.join(ctx.pool.tmpdir, f"gw-{tag}.yaml")
            with open(path, "w") as f:
                json.dump({"gateways": {"mqtt": _cfg(broker.uri, n, tag)}}, f)
            argv = [
                sys.executable, "-m", "gateways", "-c", path,
                "-C", f"connect.host={HOST}", "-C", f"connect.port={p.port}", "mqtt",
            ]  # fmt: skip
            g = await ctx.pool.spawn(f"gw-{tag}", argv, p.port, timeout=20)
            try:
                for i in range(n):
                    await dev.publish(f"dev{tag}/e{i}/state", str(i).encode(), qos=1)
                await trio.sleep(1.0)  # let it write them (not a measurement of time)
                rss[tag] = rss_bytes(g.pid) / 1e6
            finally:
                await ctx.pool.stop(g)
    return [
        Result(
            _RSS_ROWS[0][0], rss["big"], "MB", _RSS_ROWS[0][2], note="VmRSS after one message each"
        ),
        Result(_RSS_ROWS[1][0], rss["one"], "MB", note="same process and client, 1 entity"),
    ]
