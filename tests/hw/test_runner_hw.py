"""Runners that own hardware: jobs see ``hw`` (GPIO lines, a 1-wire bus), and a
thermostat stored as a job works end to end across two nodes (in-process cluster,
simulated chip and bus, virtual time)."""

from __future__ import annotations

import pytest
import trio

from distkv.cli.code import run_parser, run_run
from distkv.client.runner import Runner
from distkv.core.runner import CODE_ROOT, RUN_ROOT, STATE_ROOT
from distkv.exceptions import ConfigError
from distkv.testing.cluster import open_test_cluster
from distkv.testing.wait import eventually
from distkv.util import P, Path
from hw.gpio import SimulatedChip
from hw.host import open_hardware
from hw.onewire import SimulatedBus

T28 = "28.000028D70100"
HEATER, RELAY = 5, 17

HOST_CFG = {
    "gateways": {
        "gpio": {
            "simulated": True,
            "outputs": {"heater": {"line": HEATER}, "relay": {"line": RELAY}},
        }
    }
}

THERMOSTAT = """
while True:
    t = float(await hw.onewire.read(sensor, "temperature"))
    want = (await client.get(P("home.target"))).get("value", 0)
    hw.gpio.set("heater", t < want)
    await client.set(P("home.heating"), t < want)
    await trio.sleep(1)
"""

RELAY_FOLLOWS = 'await hw.gpio.follow("relay", client, "home.kitchen.light")'


async def _runner(cl, node, hw, *, task_status=trio.TASK_STATUS_IGNORED):
    async with cl.client(node) as rc:
        await Runner(rc, node="pi", name="pi", clock=trio.current_time, hw=hw).serve(
            task_status=task_status
        )


async def test_thermostat_and_relay_jobs_across_two_nodes(autojump_clock):
    chip = SimulatedChip()
    bus = SimulatedBus({T28: {"temperature": "19.5"}})
    async with open_test_cluster(2) as cl, open_hardware(HOST_CFG, chip=chip, bus=bus) as hw:
        async with cl.client("n2") as c, trio.open_nursery() as n:
            # everything a user does happens on n2; the hardware hangs off n1's runner
            await n.start(_runner, cl, "n1", hw)
            await c.set(P("home.target"), 21.0)
            await c.set(Path(*CODE_ROOT, "thermostat"), {"code": THERMOSTAT})
            await c.set(Path(*CODE_ROOT, "relay"), {"code": RELAY_FOLLOWS})
            jobs = Path(*RUN_ROOT, "node", "pi")
            await c.set(
                jobs + ("thermostat",),
                {"code": ["thermostat"], "target": 0, "data": {"sensor": T28}},
            )
            await c.set(jobs + ("relay",), {"code": ["relay"], "target": 0})

            await eventually(lambda: chip.level(HEATER), timeout=30)
            assert (await c.get(P("home.heating"))).value is True
            bus.set(T28, "temperature", "21.5")  # warm enough: the heater goes off
            await eventually(lambda: not chip.level(HEATER), timeout=30)
            await c.set(P("home.target"), 23)  # a new target, set on the other node
            await eventually(lambda: chip.level(HEATER), timeout=30)

            assert not chip.level(RELAY)
            await c.set(P("home.kitchen.light"), True)
            await eventually(lambda: chip.level(RELAY), timeout=30)
            await c.set(P("home.kitchen.light"), "off")
            await eventually(lambda: not chip.level(RELAY), timeout=30)
            st = (await c.get(Path(*STATE_ROOT, "node", "pi", "thermostat"))).value
            assert st["runner"] == "pi" and st["stopped"] is None  # still running
            n.cancel_scope.cancel()


async def test_jobs_without_hardware_have_no_hw(autojump_clock):
    async with open_test_cluster(1) as cl, cl.client("n1") as c, trio.open_nursery() as n:
        await n.start(_runner, cl, "n1", None)
        await c.set(Path(*CODE_ROOT, "probe"), {"code": "return 'hw' in globals()"})
        await c.set(Path(*RUN_ROOT, "node", "pi", "p"), {"code": ["probe"], "target": 0})

        async def done():
            st = (await c.get(Path(*STATE_ROOT, "node", "pi", "p"))).get("value")
            return st is not None and st.get("stopped") is not None

        await eventually(done, timeout=30)
        st = (await c.get(Path(*STATE_ROOT, "node", "pi", "p"))).value
        assert st["result"] is False
        n.cancel_scope.cancel()


async def test_bad_hardware_config_is_one_line():
    bad = {"gateways": {"gpio": {"simulated": True, "outputs": {"heater": {"lin": 5}}}}}
    with pytest.raises(ConfigError, match=r"gateways\.gpio\.outputs\.heater\.lin"):
        async with open_hardware(bad):
            pass


def test_run_all_hw_flag_parses_and_needs_a_host():
    a = run_parser().parse_args(["-n", "pi", "all", "--hw"])
    assert a.hw and a.node == "pi"
    with pytest.raises(ConfigError, match="-n NODE or -g GROUP"):
        run_run({}, ["all", "--hw"])  # fails before connecting anywhere
