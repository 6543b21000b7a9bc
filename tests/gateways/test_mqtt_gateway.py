"""The MQTT gateway against a real mosquitto: devices' strings become typed values
through the gateway user's codec, changes go out, nothing loops."""

import pytest
import trio

from distkv.bus.mqtt import open_mqtt_bus
from distkv.cli.main import error_line
from distkv.core.acl import user_path
from distkv.testing.mosquitto import Mosquitto, find_mosquitto
from distkv.testing.process import ServerProcess, ok, read_line
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P, Path
from gateways import mqtt as gw

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")

ONOFF = {
    "encode": "return 'ON' if value else 'OFF'",
    "decode": "return value.strip().lower() in ('on', '1', 'true', 'yes')",
    "in": [["ON", True], ["off", False]],
    "out": [[True, "ON"], [False, "OFF"]],
}
FLOAT = {
    "encode": "return str(value)",
    "decode": "return float(value)",
    "in": [["1.5", 1.5]],
    "out": [[1.5, "1.5"]],
}


@pytest.fixture
def broker():
    with Mosquitto() as b:
        yield b


async def next_msg(it, timeout=10):
    with trio.fail_after(timeout):
        return await it.__anext__()


async def wait_value(c, path, want, timeout=10):
    with trio.fail_after(timeout):
        while (await c.get(P(path))).get("value") != want:
            await trio.sleep(0.01)


async def test_mirror_refuses_a_codec_the_server_would_not_apply(broker):
    """Auth off: the server applies no user's codec (everybody is root), so the gateway
    user's ``onoff`` would be ignored and "ON" stored as a string. The gateway refuses
    to start, in one line naming the user and the way out; with auth on it runs."""

    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(Path(None, "codec", "onoff"), ONOFF)
            await c.set(Path(None, "conv", "gw", "home", "+", "lamp"), {"codec": ["onoff"]})
            await c.set(user_path("_test", "gw"), {"aux": {"codec": "gw"}})
        cfg = {**gw.DEFAULTS, "uri": broker.uri, "client_id": "gw-test-codec", "topic": "home"}
        async with open_memory_client(s, connect={"auth": "_test name=gw"}) as gwc:
            with pytest.raises(BaseException) as info:
                async with trio.open_nursery() as n:
                    await n.start(gw.serve, gwc, cfg)
            line = error_line(info.value)
            assert line is not None and "\n" not in line, info.value
            assert "user 'gw' has codec 'gw', but auth is off" in line
            assert "gateways.mqtt" in line
        # a user without a codec, or no login at all: nothing to lose, it runs
        async with open_memory_client(s) as plain, trio.open_nursery() as n:
            await n.start(gw.serve, plain, cfg)
            n.cancel_scope.cancel()
        async with open_memory_client(s) as c:
            await c.set(Path(None, "auth"), {"current": "_test"})
        async with (
            open_memory_client(s, connect={"auth": "_test name=gw"}) as gwc,
            trio.open_nursery() as n,
        ):
            await n.start(gw.serve, gwc, cfg)  # auth on: the server applies the codec
            n.cancel_scope.cancel()


async def test_gateway_both_ways_with_a_codec_and_no_loops(broker):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(Path(None, "codec", "onoff"), ONOFF)
            await c.set(Path(None, "conv", "gw", "home", "+", "lamp"), {"codec": ["onoff"]})
            await c.set(user_path("_test", "gw"), {"aux": {"codec": "gw"}})
            await c.set(user_path("_test", "admin"), {})
            await c.set(P("home.hall.lamp"), True)  # state before the gateway starts
            await c.set(Path(None, "auth"), {"current": "_test"})
        cfg = {**gw.DEFAULTS, "uri": broker.uri, "client_id": "gw-test", "topic": "home"}
        async with (
            open_memory_client(s, connect={"auth": "_test name=gw"}) as gwc,
            open_memory_client(s, connect={"auth": "_test name=admin"}) as admin,
            open_mqtt_bus(broker.uri, "home", "device") as dev,
            dev.subscribe("#") as sub,
            trio.open_nursery() as n,
        ):
            it = sub.__aiter__()
            await n.start(gw.serve, gwc, cfg)
            # the tree's state is published (retained) at start
            m = await next_msg(it)
            assert (m.topic, m.payload) == ("hall/lamp", b"ON")

            # a device says "on": the tree holds True; other topics stay strings
            await dev.publish("kitchen/lamp", b"on")
            await dev.publish("kitchen/temp", b"21.5")
            await wait_value(admin, "home.kitchen.temp", "21.5")
            assert (await admin.get(P("home.kitchen.lamp"))).value is True
            # the device hears its own messages, and nothing comes back from the gateway
            seen = [(m.topic, m.payload) for m in [await next_msg(it) for _ in range(2)]]
            assert seen == [("kitchen/lamp", b"on"), ("kitchen/temp", b"21.5")]

            # a change from DistKV reaches the devices, typed value -> "OFF"
            await admin.set(P("home.kitchen.lamp"), False)
            m = await next_msg(it)
            assert (m.topic, m.payload, m.retained) == ("kitchen/lamp", b"OFF", False)
            await admin.set(P("home.kitchen.json"), {"a": 1})
            m = await next_msg(it)
            assert (m.topic, m.payload) == ("kitchen/json", b'{"a": 1}')

            # a payload the codec cannot take is refused, and the gateway goes on
            await admin.set(Path(None, "codec", "float"), FLOAT)
            await admin.set(Path(None, "conv", "gw", "home", "+", "num"), {"codec": ["float"]})
            await dev.publish("x/num", b"warm")
            await dev.publish("x/num2", b"1")
            await wait_value(admin, "home.x.num2", "1")
            assert "value" not in await admin.get(P("home.x.num"))
            await dev.publish("x/num", b"2.5")
            await wait_value(admin, "home.x.num", 2.5)
            # deleting clears the retained topic
            await admin.delete(P("home.kitchen.temp"))
            while (m := await next_msg(it)).topic != "kitchen/temp":
                pass
            assert m.payload == b""
            # nothing else was echoed: a sentinel is the next message
            await admin.set(P("home.sentinel"), "x")
            m = await next_msg(it)
            assert m.topic == "sentinel"
            n.cancel_scope.cancel()


async def test_gateway_command_with_real_processes(broker, tmp_path):
    srv = ServerProcess(tmp_path, "gwnode")
    try:
        srv.start("-i", "Testing")
        ok(srv.run("distkv client data home.door set -v : closed"))
        cmd = f"exec distkv-gateway -C gateways.mqtt.uri={broker.uri} -C gateways.mqtt.topic=home mqtt"
        with srv.spawn(cmd) as proc:
            assert read_line(proc.stdout) == "Running.\n"
            async with open_mqtt_bus(broker.uri, "home", "device") as dev:
                async with dev.subscribe("door") as sub:
                    m = await next_msg(sub.__aiter__())  # live or retained: it may race
                    assert m.payload == b"closed"
                async with dev.subscribe("+") as sub:  # a late subscriber gets the state
                    m = await next_msg(sub.__aiter__())
                    assert (m.topic, m.payload, m.retained) == ("door", b"closed", True)
                await dev.publish("window", b"open")
            with trio.fail_after(10):
                while True:
                    res = await trio.to_thread.run_sync(srv.run, "distkv client data home.window")
                    if res.returncode == 0:
                        break
                    await trio.sleep(0.05)
            assert ok(res) == '"open"\n'
            # dynamic configuration: the tree moves the gateway to another topic prefix
            ok(
                srv.run(
                    "distkv client data :.distkv.config.gateways set -e : \"{'mqtt': {'topic': 'house'}}\""
                )
            )
            with trio.fail_after(10):
                while True:
                    async with open_mqtt_bus(broker.uri, "house", "device") as dev:
                        async with dev.subscribe("door") as sub:
                            with trio.move_on_after(0.5):
                                m = await next_msg(sub.__aiter__())
                                break
            assert m.payload == b"closed"
    finally:
        srv.stop()


async def test_gateway_survives_the_broker_going_away(broker):
    async with open_test_server(init="Testing") as s:
        cfg = {**gw.DEFAULTS, "uri": broker.uri, "client_id": "gw-test", "topic": "home"}
        async with (
            open_memory_client(s) as c,
            trio.open_nursery() as n,
        ):
            await n.start(gw.serve, c, cfg)
            await broker.astop()
            await c.set(P("home.while.down"), "queued")  # the tree keeps serving
            await broker.astart()
            async with open_mqtt_bus(broker.uri, "home", "device") as dev:
                async with dev.subscribe("while/down") as sub:
                    m = await next_msg(sub.__aiter__(), timeout=20)
                    assert m.payload == b"queued"
                await dev.publish("after/up", b"1")
                await wait_value(c, "home.after.up", "1", timeout=20)
            n.cancel_scope.cancel()


async def test_a_long_outage_republishes_everything(broker):
    """More changes than the gateway may queue while the broker is away: none is
    lost, the whole state goes out once it is back."""
    async with open_test_server(init="Testing") as s:
        cfg = {
            **gw.DEFAULTS,
            "uri": broker.uri,
            "client_id": "gw-test",
            "topic": "home",
            "max_pending": 5,
        }
        async with open_memory_client(s) as c, trio.open_nursery() as n:
            await n.start(gw.serve, c, cfg)
            await broker.astop()
            for i in range(20):
                await c.set(P(f"home.many.k{i}"), str(i))
            await broker.astart()
            async with open_mqtt_bus(broker.uri, "home", "device") as dev:
                got = {}
                async with dev.subscribe("many/+") as sub:
                    it = sub.__aiter__()
                    while len(got) < 20:
                        m = await next_msg(it, timeout=20)
                        got[m.topic] = m.payload
                assert got == {f"many/k{i}": str(i).encode() for i in range(20)}
            n.cancel_scope.cancel()


async def test_a_gateway_that_lost_its_rights_says_so_once(broker):
    """Connected while auth was off, then ``auth init`` (the order of the tutorial and
    of many a setup): the gateway's login no longer holds, it stops, and the one
    error was printed once per task of the gateway (two identical lines)."""
    from gateways.__main__ import _serve as serve_gateway

    cfg = {"uri": broker.uri, "client_id": "gw-test-rights",
           "entities": {"plug1": {"template": "tasmota", "device": "plug1", "path": "home.p"}}}  # fmt: skip
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(user_path("_test", "root"), {})
        async with open_memory_client(s) as gwc:
            with pytest.raises(BaseException) as info:
                async with trio.open_nursery() as n:
                    # as distkv-gateway runs it: with its dynamic config and counters
                    await n.start(serve_gateway, gwc, {"gateways": {"mqtt": cfg}}, gw, "mqtt")
                    async with open_memory_client(s) as c:
                        await c.set(Path(None, "auth"), {"current": "_test"})
                    with trio.fail_after(10):
                        await trio.sleep_forever()
    assert error_line(info.value) == "ClientAuthRequiredError: auth is on now; log in"


async def test_a_typo_in_the_trees_gateway_config_stops_no_running_gateway(broker, caplog):
    """``.distkv config gateways`` reaches every gateway of the network. A typo there
    used to end each running one with ``ConfigError`` (under systemd: a restart loop
    on every host); now a running gateway logs one line and keeps its settings, and
    takes the next good change. One that starts with it refuses, naming the entry."""
    from gateways.__main__ import _serve as serve_gateway

    conf = P(":.distkv.config.gateways")
    cfg = {"gateways": {"mqtt": {"uri": broker.uri, "client_id": "gw-test-dyn", "topic": "home"}}}
    async with (
        open_test_server(init="Testing") as s,
        open_memory_client(s) as c,
        open_mqtt_bus(broker.uri, "home", "device") as dev,
    ):
        async with trio.open_nursery() as n:
            await n.start(serve_gateway, c, cfg, gw, "mqtt")
            await c.set(conf, {"mqtt": {"topik": "house"}})
            with trio.fail_after(10):
                while "keeps its current settings" not in caplog.text:
                    await trio.sleep(0.01)
            assert (
                "unknown setting gateways.mqtt.topik (did you mean gateways.mqtt.topic?) "
                "(from the tree's .distkv config gateways); the mqtt gateway keeps its "
                "current settings"
            ) in caplog.text
            await dev.publish("hall/temp", b"21")  # still running, as before
            await wait_value(c, "home.hall.temp", "21")
            await c.set(conf, {"mqtt": {"topic": "house"}})  # a good change is taken
            async with open_mqtt_bus(broker.uri, "house", "device2") as dev2:
                with trio.fail_after(10):
                    while (await c.get(P("home.hall.temp"))).value != "22":
                        await dev2.publish("hall/temp", b"22")  # until it has restarted
                        await trio.sleep(0.05)
            n.cancel_scope.cancel()
        await c.set(conf, {"mqtt": {"qos": 7}})
        with pytest.raises(BaseException) as info:
            async with trio.open_nursery() as n:
                await n.start(serve_gateway, c, cfg, gw, "mqtt")
        assert error_line(info.value) == (
            "ConfigError: gateways.mqtt.qos: 7 is not one of 0, 1 "
            "(from the tree's .distkv config gateways)"
        )
