"""The MQTT gateway with emulated real devices (paho clients speaking Tasmota,
zigbee2mqtt and Home Assistant topics) against a real mosquitto."""

import json
import socket
import threading

import paho.mqtt.client as paho
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion

from distkv.exceptions import ConfigError
from distkv.testing.mosquitto import Mosquitto, find_mosquitto
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P
from gateways import mqtt as gw

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")

# --- emulated devices: plain paho clients (paho's own thread), real topic layouts


class Device:
    """A paho client; ``received`` lists ``(topic, payload, retained)`` in order."""

    def __init__(self, port: int, client_id: str, subscribe=(), will=None) -> None:
        self.received: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if will:
            self.c.will_set(*will, qos=1, retain=True)
        self._subs = list(subscribe)
        self.ready = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self._subs:
            self.ready.set()
        assert self.ready.wait(10)

    def _on_connect(self, c, userdata, flags, reason, props) -> None:
        if self._subs:
            c.subscribe([(t, 1) for t in self._subs])

    def _on_message(self, c, userdata, msg) -> None:
        with self.lock:
            self.received.append((msg.topic, msg.payload, bool(msg.retain)))
        self.handle(msg.topic, msg.payload, bool(msg.retain))

    def handle(self, topic: str, payload: bytes, retained: bool) -> None:
        pass

    def pub(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def got(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.received if t == topic]

    def close(self, clean: bool = True) -> None:
        if clean:
            self.c.disconnect()
        else:
            self.c.socket().close()
        self.c.loop_stop()


class TasmotaPlug(Device):
    """Tasmota relay: ``cmnd/ID/POWER`` -> switches -> ``stat/ID/POWER``; LWT."""

    def __init__(self, port: int, ident: str, on: bool = False) -> None:
        self.ident, self.on = ident, on
        super().__init__(
            port, f"tasmota-{ident}", [f"cmnd/{ident}/POWER"],
            will=(f"tele/{ident}/LWT", b"Offline"),
        )  # fmt: skip
        self.pub(f"tele/{ident}/LWT", b"Online", retain=True)

    def handle(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == f"cmnd/{self.ident}/POWER":
            self.on = payload.upper() == b"ON"
            self.report()

    def report(self) -> None:
        self.c.publish(f"stat/{self.ident}/POWER", b"ON" if self.on else b"OFF", qos=1)

    def press_button(self) -> None:
        self.on = not self.on
        self.report()

    @property
    def commands(self) -> list[tuple[bytes, bool]]:
        return self.got(f"cmnd/{self.ident}/POWER")


class Zigbee2MqttLamp(Device):
    """zigbee2mqtt light: JSON state on ``zigbee2mqtt/NAME``, ``/set`` JSON commands."""

    def __init__(self, port: int, name: str) -> None:
        self.name, self.state = name, "OFF"
        super().__init__(port, f"z2m-{name}", [f"zigbee2mqtt/{name}/set"])
        self.pub(f"zigbee2mqtt/{name}/availability", b'{"state":"online"}', retain=True)

    def handle(self, topic: str, payload: bytes, retained: bool) -> None:
        cmd = json.loads(payload)
        self.state = cmd.get("state", self.state)
        body = {"state": self.state, "brightness": 200, "linkquality": 90}
        self.c.publish(f"zigbee2mqtt/{self.name}", json.dumps(body), qos=1, retain=True)


@pytest.fixture
def broker():
    with Mosquitto() as b:
        yield b


def config(broker, **kw):
    return {
        "uri": broker.uri,
        "client_id": "gw-test",
        "entities": {
            "plug1": {"template": "tasmota", "device": "plug1", "path": "home.plug1",
                      "discovery": True},
            "plug2": {"template": "tasmota", "device": "plug2", "path": "home.plug2"},
            "th1": {"template": "tasmota_sensor", "device": "th1", "path": "home.th1.temp",
                    "field": "AM2301.Temperature", "unit": "°C", "discovery": True},
            "lamp": {"template": "zigbee2mqtt", "device": "lamp", "path": "home.lamp"},
        },
        **kw,
    }  # fmt: skip


async def until(pred, timeout=10):
    with trio.fail_after(timeout):
        while True:
            ok = pred()
            if not isinstance(ok, bool):
                ok = await ok
            if ok:
                return
            await trio.sleep(0.005)


async def value(c, path):
    return (await c.get(P(path))).get("value")


async def has(c, path, want):
    return await value(c, path) == want


async def test_tasmota_plug_is_safe(broker):
    plug = TasmotaPlug(broker.port, "plug1", on=False)
    plug2 = TasmotaPlug(broker.port, "plug2", on=False)
    try:
        async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
            # before the gateway runs: somebody wanted it on, the tree's state says on
            await c.set(P("home.plug1.desired"), True)
            await c.set(P("home.plug1.state"), True)
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                # the device reports (a button press): the tree follows the device
                plug.press_button()
                plug.press_button()
                await until(lambda: has(c, "home.plug1.state", False))
                await until(lambda: has(c, "home.plug1.online", True))
                # nothing was sent: the stale desired value is not a request
                assert plug.commands == []
                assert await value(c, "home.plug1.desired") is True  # disagreement visible

                # a user changes desired: exactly one command, not retained
                await c.set(P("home.plug1.desired"), True)
                await until(lambda: has(c, "home.plug1.state", True))
                assert plug.commands == [(b"ON", False)]
                # the button again: state follows, desired stays, no command
                plug.press_button()
                await until(lambda: has(c, "home.plug1.state", False))
                # the same value again is a new request: sent once more
                await c.set(P("home.plug1.desired"), True)
                await until(lambda: has(c, "home.plug1.state", True))
                assert plug.commands == [(b"ON", False), (b"ON", False)]
                n.cancel_scope.cancel()

            plug.press_button()
            await until(lambda: has(c, "home.plug1.state", True))  # gateway down: stale
            # restart, and a configuration change (restart too): never re-sends
            for extra in ({}, {"qos": 0}):
                async with trio.open_nursery() as n:
                    await n.start(gw.serve, c, config(broker, **extra))
                    await c.set(P("home.plug2.desired"), True)  # a barrier: plug2 hears it
                    await until(lambda: has(c, "home.plug2.state", True))
                    plug2.press_button()
                    await until(lambda: has(c, "home.plug2.state", False))
                    n.cancel_scope.cancel()
            assert plug.commands == [(b"ON", False), (b"ON", False)]
            # the retained state on the broker never was a command from us
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                plug.report()
                await until(lambda: has(c, "home.plug1.state", False))
                n.cancel_scope.cancel()
            # the device going away is visible
            plug.close(clean=False)
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                await until(lambda: has(c, "home.plug1.online", False))
                n.cancel_scope.cancel()
    finally:
        plug2.close()


async def test_sensor_json_field_zigbee_and_status(broker):
    lamp = Zigbee2MqttLamp(broker.port, "lamp")
    th1 = Device(broker.port, "tasmota-th1")
    watcher = Device(broker.port, "watcher", ["distkv/gateway/mqtt/status"])
    try:
        async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                sensor = {"Time": "2024-01-01T00:00:00", "AM2301": {"Temperature": 21.5,
                          "Humidity": 40.1}, "TempUnit": "C"}  # fmt: skip
                th1.pub("tele/th1/SENSOR", json.dumps(sensor))
                await until(lambda: has(c, "home.th1.temp.state", 21.5))
                th1.pub("tele/th1/SENSOR", b'{"AM2301": {"Temperature": "warm"}}')
                th1.pub("tele/th1/SENSOR", b'{"AM2301": {"Temperature": 22}}')
                await until(lambda: has(c, "home.th1.temp.state", 22.0))
                assert type(await value(c, "home.th1.temp.state")) is float

                await until(lambda: has(c, "home.lamp.online", True))
                await c.set(P("home.lamp.desired"), True)
                await until(lambda: has(c, "home.lamp.state", True))
                assert lamp.got("zigbee2mqtt/lamp/set") == [(b'{"state": "ON"}', False)]
                await until(lambda: watcher.got("distkv/gateway/mqtt/status")[-1:] == [
                    (b"online", False)] or watcher.got("distkv/gateway/mqtt/status")[-1:] == [
                    (b"online", True)])  # fmt: skip
                n.cancel_scope.cancel()
            await until(lambda: _last(watcher, "distkv/gateway/mqtt/status", b"offline"))
    finally:
        for d in (lamp, th1, watcher):
            d.close()


async def _last(dev, topic, payload):
    got = dev.got(topic)
    return bool(got) and got[-1][0] == payload


async def test_home_assistant_discovery_and_control(broker):
    plug = TasmotaPlug(broker.port, "plug1")
    ha = Device(broker.port, "homeassistant", ["homeassistant/#", "distkv/gateway/#"])
    try:
        async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                await until(lambda: _configs(ha, 2))
                configs = {t: json.loads(p) for t, p, r in ha.received if t.endswith("/config")}
                for topic, cfg in configs.items():
                    prefix, component, oid, last = topic.split("/")
                    assert (prefix, last) == ("homeassistant", "config")
                    # HA's documented required fields per component
                    need = {"switch": ["command_topic"], "sensor": ["state_topic"],
                            "binary_sensor": ["state_topic"]}[component]  # fmt: skip
                    assert all(isinstance(cfg[k], str) and cfg[k] for k in need)
                    assert cfg["unique_id"] and all("topic" in a for a in cfg["availability"])
                    if component == "sensor":
                        assert cfg["unit_of_measurement"] == "°C"
                sw = next(c_ for t, c_ in configs.items() if "/switch/" in t)
                late = Device(broker.port, "late", ["homeassistant/#"])  # retained?
                try:
                    await until(lambda: _configs(late, 2))
                    assert all(r for t, p, r in late.received)
                finally:
                    late.close()

                # HA switches it: desired written, one command to the device
                ha.pub(sw["command_topic"], b"ON")
                await until(lambda: has(c, "home.plug1.state", True))
                assert await value(c, "home.plug1.desired") is True
                assert plug.commands == [(b"ON", False)]
                await until(lambda: _last(ha, sw["state_topic"], b"ON"))
                n.cancel_scope.cancel()
            # a retained command (left on the broker while the gateway was down) is
            # replayed when the gateway subscribes: stale, ignored
            ha.pub(sw["command_topic"], b"OFF", retain=True)
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, config(broker))
                ha.pub("homeassistant/status", b"online")  # HA restarts: discovery again
                await until(lambda: _configs(ha, 6))
                await c.set(P("home.plug2.desired"), False)  # a barrier
                await until(lambda: has(c, "home.plug1.online", True))
                assert plug.commands == [(b"ON", False)]
                assert await value(c, "home.plug1.desired") is True
                ha.pub(sw["command_topic"], b"", retain=True)  # clear the retained one
                n.cancel_scope.cancel()
    finally:
        plug.close()
        ha.close()


async def _configs(dev, n):
    return sum(t.endswith("/config") for t, p, r in dev.received) >= n


@pytest.mark.parametrize(
    "change, key",
    [
        ({"qos": 2}, "gateways.mqtt.qos"),
        ({"entities": {"x": {"path": "a", "state": ""}}}, "gateways.mqtt.entities.x.state"),
        ({"entities": {"x": {"path": "a", "state": "#"}}}, "gateways.mqtt.entities.x.state"),
        ({"entities": {"x": {"path": "a", "state": "a/+"}}}, "gateways.mqtt.entities.x.state"),
        ({"entities": {"x": {"path": "a", "state": "s", "codec": "no"}}},
         "gateways.mqtt.entities.x.codec"),
        ({"entities": {"x": {"template": "tasmota", "path": "a"}}},
         "gateways.mqtt.entities.x.device"),
        ({"topic": "#"}, "gateways.mqtt.topic"),
        ({"uri": "http://x"}, "gateways.mqtt.uri"),
    ],
)  # fmt: skip
def test_bad_config_is_one_line_naming_the_key(change, key):
    cfg = {"entities": {"p": {"template": "tasmota", "device": "p", "path": "home.p"}}}
    with pytest.raises(ConfigError) as exc:
        gw.check_config({**cfg, **change})
    line = str(exc.value)
    assert "\n" not in line and line.startswith(key), line


def test_default_client_id_is_host_and_name():
    cfg = gw.check_config({"name": "upstairs", "topic": "home"})
    assert cfg.client_id == f"distkv-gw-{socket.gethostname()}-upstairs"


async def test_client_id_clash_is_reported_in_one_line(broker):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        cfg = config(broker)
        with pytest.raises(Exception) as exc, trio.fail_after(30):
            async with trio.open_nursery() as n:
                await n.start(gw.serve, c, cfg)
                await n.start(gw.serve, c, cfg)
        from distkv.cli.main import error_line

        line = error_line(exc.value)
        assert line is not None and "'gw-test'" in line and "another client" in line, line
