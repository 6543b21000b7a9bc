"""kill -9 the node under a running runner and an MQTT gateway: both carry on through
the other node, with a line in the log and no traceback."""

import contextlib

import pytest
import trio

from distkv.bus.mqtt import open_mqtt_bus
from distkv.client import open_client
from distkv.testing.mosquitto import find_mosquitto
from distkv.testing.process import ok, read_line
from distkv.util import P

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed"),
]

RECORD = 'await client.set(P("done") + (info["path"][-1],), info["runner"])\n'


async def value_on(proc, path: str):
    async with open_client(connect={"host": "127.0.0.1", "port": proc.port}) as c:
        return (await c.get(P(path))).get("value")


async def wait_value(proc, path: str, want, timeout: float = 30):
    with trio.fail_after(timeout):
        while (got := await value_on(proc, path)) != want:
            await trio.sleep(0.1)
    return got


async def test_runner_and_gateway_survive_their_node(broker, nodes):
    one = nodes.make("one", broker)
    two = nodes.make("two", broker)
    await nodes.start("one", "-i", "Testing")
    await nodes.start("two")
    ok(await nodes.run("one", "distkv client code set rec", input=RECORD))
    servers = f"'connect.servers=[\"127.0.0.1:{one.port}\", \"127.0.0.1:{two.port}\"]'"
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(one.spawn(f"exec distkv -C {servers} client run all -N r1"))
        gateway = stack.enter_context(
            one.spawn(f"exec distkv-gateway -C {servers} -C gateways.mqtt.uri={broker.uri} -C gateways.mqtt.topic=home mqtt")
        )
        assert read_line(gateway.stdout) == "Running.\n"
        ok(await nodes.run("one", "distkv client run set -c rec -t 0 a.before"))
        assert await wait_value(two, "done.before", "r1") == "r1"

        one.stop(kill=True)  # kill -9 the node both are connected to

        # the runner goes on: a job set on node two runs
        ok(await nodes.run("two", "distkv client run set -c rec -t 0 a.after"))
        assert await wait_value(two, "done.after", "r1") == "r1"
        # the gateway goes on, both ways
        async with open_mqtt_bus(broker.uri, "home", "device") as dev:
            await dev.publish("window", b"open")
            assert await wait_value(two, "home.window", "open") == "open"
            async with dev.subscribe("lamp") as sub:
                ok(await nodes.run("two", "distkv client data home.lamp set -v : on"))
                with trio.fail_after(20):
                    async for m in sub:
                        if m.payload == b"on":
                            break
        runner.terminate()
        gateway.terminate()
        logs = {"runner": runner.stderr.read(), "gateway": gateway.stderr.read()}
    for who, log in logs.items():
        assert "Traceback" not in log, f"{who}:\n{log}"
        assert "reconnected" in log, f"{who}:\n{log}"
        assert len(log.splitlines()) <= 6, f"{who} logged too much:\n{log}"
