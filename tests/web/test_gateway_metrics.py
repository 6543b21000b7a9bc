"""Gateway counters: in ``/metrics`` (label ``gateway``) for a gateway running inside the
node, in the tree entry ``.distkv gateway NAME`` for one running as its own process, at
most once a minute and only after a change (SD-card wear)."""

from __future__ import annotations

import functools

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.client import open_client
from distkv.config import merge
from distkv.server.metrics import Metrics, render
from distkv.testing.process import ServerProcess, free_port, read_line
from distkv.testing.server import open_memory_client, open_test_server
from distkv.testing.wait import eventually
from distkv.util import P, Path
from gateways.counters import COUNTERS, GatewayCounters, PublishPlan, publish_counters
from hw import gpiogw
from hw.gpio import SimulatedChip

from .helpers import http_get
from .test_metrics_tls import sample

GPIO = {
    "simulated": True,
    "path": "home.gpio",
    "inputs": {"button": {"line": 22, "debounce": 0}},
    "outputs": {"relay": {"line": 17, "follow": "home.light"}},
}


def test_metrics_show_each_gateway_with_its_label():
    m = Metrics(["get_value"])
    a, b = GatewayCounters(), GatewayCounters()
    m.add_gateway("kitchen", a)
    m.add_gateway("cellar", b)
    a.add("messages_in", 3)
    b.add("dropped")
    b.follow("devices_online", lambda: 2)
    text = render(m, {}, 0)
    assert sample(text, "distkv_gateway_messages_in_total", gateway="kitchen") == 3
    assert sample(text, "distkv_gateway_messages_in_total", gateway="cellar") == 0
    assert sample(text, "distkv_gateway_dropped_total", gateway="cellar") == 1
    assert sample(text, "distkv_gateway_devices_online", gateway="cellar") == 2
    assert text.count("# TYPE distkv_gateway_messages_in_total counter") == 1
    with pytest.raises(KeyError):
        a.add("mesages_in")  # a typo in a gateway is a bug, not a new label


def test_publish_plan_waits_for_a_change_and_a_minute():
    c, plan = GatewayCounters(), PublishPlan(60)
    assert not plan.due(c.snapshot(), 0)  # nothing happened yet: nothing to write
    c.add("writes")
    assert plan.due(c.snapshot(), 0)  # the first change: at once
    plan.done(c.snapshot(), 0)
    assert not plan.due(c.snapshot(), 1000)  # nothing changed: nothing written, ever
    online = [3]
    c.follow("devices_online", lambda: online[0])  # a gauge read when looked at
    assert not plan.due(c.snapshot(), 59.9)
    assert plan.due(c.snapshot(), 60)
    plan.done(c.snapshot(), 60)
    online[0] = 3
    assert not plan.due(c.snapshot(), 200)
    online[0] = 2
    assert plan.due(c.snapshot(), 200)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 200), st.booleans()), max_size=60))
def test_publish_plan_never_writes_twice_a_minute_or_without_a_change(steps):
    """The loop of publish_counters, simulated: changes at random times; a write is
    never within 60 s of the last one, never without a change since, and a change is
    written within 61 s (the loop looks once a second)."""
    c, plan = GatewayCounters(), PublishPlan(60)
    now, writes, pending_since = 0.0, [], None
    for dt, change in steps:
        end = now + dt
        while now <= end:
            snap = c.snapshot()
            if plan.due(snap, now):
                assert not writes or now - writes[-1][0] >= 60
                assert not writes or snap != writes[-1][1]
                writes.append((now, snap))
                plan.done(snap, now)
                pending_since = None
            if pending_since is not None:
                assert now - pending_since <= 61
            now = max(plan.next_check(now), now + 1)
        if change:
            c.add("messages_in")
            if pending_since is None:
                pending_since = now


async def test_a_separate_gateway_writes_its_counters_rarely(autojump_clock):
    """Virtual clock: a gateway that switches a relay every second for five minutes
    writes its counters five times, not 300; idle, it writes nothing."""
    chip = SimulatedChip()
    cfg = merge(gpiogw.DEFAULTS, GPIO)
    counters = GatewayCounters()
    path = Path(".distkv", "gateway", "gpio")
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with open_memory_client(s) as gwc, trio.open_nursery() as n:
            await n.start(functools.partial(gpiogw.serve, chip=chip, counters=counters), gwc, cfg)
            n.start_soon(publish_counters, gwc, counters, "gpio")
            async with c.watch(path, fetch=True, max_depth=0) as w:
                seen = []

                async def collect():
                    async for ev in w:
                        if "value" in ev:
                            seen.append((trio.current_time(), ev.value))

                n.start_soon(collect)
                t0 = trio.current_time()
                for i in range(300):
                    await c.set(P("home.light"), i % 2 == 0)
                    await trio.sleep(1)
                await trio.sleep(600)  # idle: nothing more
                n.cancel_scope.cancel()
    times = [t - t0 for t, _ in seen]
    assert 5 <= len(seen) <= 7, times
    assert all(b - a >= 60 for a, b in zip(times, times[1:], strict=False)), times
    assert times[-1] < 300 + 61  # the last change is written within a minute
    last = seen[-1][1]
    assert last["commands"] == 300 and last["writes"] >= 301  # the relay's level, each time
    assert set(COUNTERS) <= set(last) and last["devices_online"] == 2


@pytest.mark.slow
async def test_gateways_in_the_node_and_on_their_own(tmp_path):
    """Real processes: a GPIO gateway (simulated chip) inside the node shows in
    /metrics; the same gateway as ``distkv-gateway gpio`` writes .distkv gateway gpio."""
    web = free_port()
    srv = ServerProcess(tmp_path, "gwm", cfg={
        "server": {"services": [{"kind": "gateway", "gateway": "gpio"}],
                   "web": {"enabled": True, "port": web}},
        "gateways": {"gpio": GPIO}})  # fmt: skip
    try:
        assert srv.start("-i", "x") == "Running."
        conn = {"connect": {"host": "127.0.0.1", "port": srv.port}}
        async with open_client(**conn) as c:
            await c.set(P("home.light"), True)

            async def scraped():
                _, _, body = await http_get(web, "/metrics")
                text = body.decode()
                # the button's level at start, then the relay's driven level
                if sample(text, "distkv_gateway_writes_total", gateway="gpio") == 2:
                    return text

            text = await eventually(scraped, timeout=20, what="the gateway's counters")
            assert sample(text, "distkv_gateway_commands_total", gateway="gpio") == 1
            assert sample(text, "distkv_gateway_devices_online", gateway="gpio") == 2
            # the node process writes no counter entry for a gateway it runs
            assert "value" not in await c.get(P(":.distkv.gateway.gpio"))

            # the same section, run as a process of its own (another simulated chip)
            with srv.spawn("exec distkv-gateway gpio") as gw:
                assert read_line(gw.stdout).strip() == "Running."

                async def entry():
                    v = (await c.get(P(":.distkv.gateway.gpio"))).get("value")
                    return v if v and v["writes"] >= 1 else None

                v = await eventually(entry, timeout=20, what=".distkv gateway gpio")
                assert v["devices_online"] == 2 and v["time"] > 0
    finally:
        srv.stop()


async def test_owfs_counts_readings_writes_refusals_errors_and_devices(autojump_clock):
    from gateways import owfs
    from hw.onewire import SimulatedBus

    t28, t10 = "28.000028D70100", "10.67C6697351FF"
    bus = SimulatedBus({t28: {"temperature": "21.5"}, t10: {"temperature": "22"}})
    counters = GatewayCounters()
    serve = functools.partial(owfs.serve, bus=bus, counters=counters)
    async with open_test_server(init="Testing") as s, open_memory_client(s) as gwc:
        async with trio.open_nursery() as n:
            await n.start(serve, gwc, merge(owfs.DEFAULTS, {"interval": 10}))
            c = counters.snapshot()
            # two readings, each written with its device's `present`
            assert (c["messages_in"], c["writes"], c["devices_online"]) == (2, 4, 2)
            bus.set(t28, "temperature", "85")  # the DS18B20 power-on value: implausible
            bus.fail(t10)
            await bus.wait_listings(bus.listings + 2)
            c = counters.snapshot()
            assert c["refused"] == 1 and c["errors"] >= 1
            bus.remove(t28)
            bus.remove(t10)
            await bus.wait_listings(bus.listings + 2)
            assert counters.gauge("devices_online") == 0
            n.cancel_scope.cancel()


async def test_mqtt_counts_messages_commands_and_refused_payloads():
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from distkv.testing.mosquitto import Mosquitto, find_mosquitto
    from gateways import mqtt

    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    counters = GatewayCounters()
    with Mosquitto() as broker:
        plug = paho.Client(CallbackAPIVersion.VERSION2, client_id="plug1")
        plug.connect("127.0.0.1", broker.port)
        plug.loop_start()
        try:
            gcfg = {"uri": broker.uri, "client_id": "gw-counters", "entities": {
                "plug1": {"template": "tasmota", "device": "plug1", "path": "home.plug1"}}}  # fmt: skip
            async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
                async with trio.open_nursery() as n:
                    await n.start(functools.partial(mqtt.serve, counters=counters), c, gcfg)
                    plug.publish("tele/plug1/LWT", "Online", qos=1).wait_for_publish(10)
                    plug.publish("stat/plug1/POWER", "ON", qos=1).wait_for_publish(10)
                    plug.publish("stat/plug1/POWER", "MAYBE", qos=1).wait_for_publish(10)
                    await c.set(P("home.plug1.desired"), False)

                    def counted():
                        k = counters.counts
                        # online, state (the desired write is the test's own)
                        return (k["messages_in"] >= 3 and k["commands"] == 1 and k["refused"]
                                and k["writes"] >= 2)  # fmt: skip

                    await eventually(counted, timeout=10, what="the plug's messages counted")
                    k = counters.snapshot()
                    assert k["messages_out"] >= 1 and k["write_errors"] == 0  # the command
                    assert k["devices_online"] == 1 and k["dropped"] == 0
                    n.cancel_scope.cancel()
        finally:
            plug.loop_stop()
            plug.disconnect()
