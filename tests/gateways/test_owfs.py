"""The 1-wire gateway: the pure "what to write" logic, the polling loop against a
simulated bus (in-process server, virtual clock), and the real parts: pyownet against
a private ``owserver --tester=10,28``, and ``distkv-gateway owfs`` as a process
feeding a ``distkv server`` process."""

from __future__ import annotations

import functools
import itertools
import logging
import math
from contextlib import asynccontextmanager

import pytest
import trio

from distkv.config import merge
from distkv.exceptions import ConfigError
from distkv.testing.owserver import TESTER_DEVICES, TESTER_TEMPERATURES, Owserver, find_owserver
from distkv.testing.process import ServerProcess, ok, read_line
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P
from gateways import owfs as gw
from hw.onewire import OneWireError, OwserverBus, SimulatedBus

T28 = "28.000028D70100"
T10 = "10.000010EF0000"
PIO = "3A.0000000A0B0C"  # a family the default config does not read
ROOT = P("onewire")

needs_owserver = pytest.mark.skipif(find_owserver() is None, reason="owserver not installed")


def key(device: str, name: str = "temperature"):
    return ROOT + (device, name)


def cfg(**over):
    return merge(gw.DEFAULTS, over)


def sample_bus() -> SimulatedBus:
    return SimulatedBus(
        {
            T28: {"temperature": "     21.5", "type": "DS18B20"},
            T10: {"temperature": "          22"},
            PIO: {"PIO.A": "1"},
        }
    )


@asynccontextmanager
async def running_gateway(server, bus, **over):
    """The gateway on its own client, started (first poll done); stopped on exit."""
    async with open_memory_client(server) as gwc, trio.open_nursery() as n:
        await n.start(functools.partial(gw.serve, bus=bus), gwc, cfg(**over))
        yield
        n.cancel_scope.cancel()


async def one_more_poll(bus: SimulatedBus) -> None:
    """Wait until a poll that started after now has completed: polls list the bus
    first, so the one after the next listing is done once a second listing starts."""
    await bus.wait_listings(bus.listings + 2)


async def wait_value(c, path, want, timeout=60):
    with trio.fail_after(timeout):
        while (await c.get(path)).get("value", "<none>") != want:
            await trio.sleep(0.1)


async def tocks(c, paths):
    return {p: (await c.get(p)).tock for p in paths}


_markers = itertools.count()


async def events_until_marker(it, c):
    """The watch events before a marker written now (the server keeps their order)."""
    marker = f"marker {next(_markers)}"
    await c.set(P("marker"), marker)
    out = []
    with trio.fail_after(10):
        async for ev in it:
            if ev.path == P("marker") and ev.value == marker:
                return out
            out.append((ev.path, ev.get("value")))


# --- pure logic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,want",
    [
        ("     21.5", 21.5),
        ("  -0.25 ", -0.25),
        ("          85", 85.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("DS18B20", "DS18B20"),
        ("0,1", "0,1"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1" * 400, "1" * 400),  # overflows to inf: not a finite number
        ("   ", ""),
    ],
)
def test_typed_value(raw, want):
    got = gw.typed_value(raw)
    assert got == want and type(got) is type(want)


def test_tracker_writes_only_changes():
    t = gw.Tracker({"28": ["temperature"], "10": ["temperature"]})
    ch = t.update([T28, T10, PIO], {(T28, "temperature"): "21.5", (T10, "temperature"): "22"})
    assert ch.writes == [
        ((T10, "present"), True),
        ((T10, "temperature"), 22.0),
        ((T28, "present"), True),
        ((T28, "temperature"), 21.5),
    ]
    ch = t.update([T28, T10], {(T28, "temperature"): " 21.5 ", (T10, "temperature"): "22.0"})
    assert ch.writes == []
    ch = t.update([T28], {(T28, "temperature"): "21.75"})
    assert ch.writes == [((T28, "temperature"), 21.75), ((T10, "present"), False)]
    assert t.update([T28], {(T28, "temperature"): "21.75"}).writes == []  # False once
    ch = t.update([T28, T10], {(T28, "temperature"): "21.75", (T10, "temperature"): "22"})
    assert ch.writes == [((T10, "present"), True)]  # value unchanged while it was away


def test_tracker_seeded_from_the_tree():
    known = [
        ((T28, "present"), True),
        ((T28, "temperature"), 21.5),
        ((T10, "present"), True),
        ((T10, "temperature"), True),  # True == 1.0, but a bool is not our reading
        ((PIO, "present"), True),  # not a family we read: not ours to mark as gone
    ]
    t = gw.Tracker({"28": ["temperature"], "10": ["temperature"]}, known)
    ch = t.update([T28], {(T28, "temperature"): "21.5"})
    assert ch.writes == [((T10, "present"), False)]
    ch = t.update([T28, T10], {(T28, "temperature"): "21.5", (T10, "temperature"): "1"})
    assert ch.writes == [((T10, "present"), True), ((T10, "temperature"), 1.0)]


def test_tracker_errors_and_outages_are_news_once():
    t = gw.Tracker({"28": ["temperature", "type"]})
    ch = t.update([T28], {(T28, "temperature"): "21.5"}, {T28: "CRC error"})
    assert ch.writes == [((T28, "present"), True), ((T28, "temperature"), 21.5)]
    assert ch.failed == {T28: "CRC error"}
    assert t.update([T28], {}, {T28: "CRC error again"}).failed == {}
    assert t.lost("down") is True
    assert t.lost("still down") is False
    ch = t.update([T28], {(T28, "temperature"): "21.5", (T28, "type"): "DS18B20"})
    assert ch.reachable_again and ch.recovered == [T28]
    assert ch.writes == [((T28, "type"), "DS18B20")]
    assert not t.update([T28], {}).reachable_again


def test_check_config():
    c = gw.check_config(cfg(attributes={28: ["temperature", "temphigh"], 5: "PIO", "1d": None}))
    assert c["attributes"] == {
        "10": ("temperature",),
        "28": ("temperature", "temphigh"),
        "05": ("PIO",),
        "1D": (),
    }
    assert c["path"] == P("onewire")
    for bad in (
        {"interval": 0},
        {"interval": "10"},
        {"port": "4304"},
        {"attributes": {"x": ["temperature"]}},
        {"attributes": {"28": ["present"]}},
        {"attributes": {"28": ["../../etc"]}},
        {"attributes": ["temperature"]},
    ):
        with pytest.raises(ConfigError):
            gw.check_config(cfg(**bad))


async def test_bad_config_fails_before_started():
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with trio.open_nursery() as n:
            with pytest.raises(ConfigError, match="interval"):
                await n.start(functools.partial(gw.serve, bus=SimulatedBus()), c, cfg(interval=-1))


# --- the polling loop, simulated bus, virtual time ------------------------------------


async def test_values_appear_typed(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus, attributes={"28": ["temperature", "type"]}):
            # started() comes after the first poll: everything is there already
            assert sorted(await c.list(ROOT)) == [T10, T28]
            for path, want in [
                (key(T28), 21.5),
                (key(T28, "type"), "DS18B20"),
                (key(T28, "present"), True),
                (key(T10), 22.0),
                (key(T10, "present"), True),
            ]:
                got = (await c.get(path)).value
                assert got == want and type(got) is type(want), path
            assert str(key(T28)) == "onewire.28:.000028D70100.temperature"


async def test_unchanged_readings_write_nothing(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus):
            paths = [key(T28), key(T28, "present"), key(T10), key(T10, "present")]
            before = await tocks(c, paths)
            reads = bus.reads
            for _ in range(5):
                await one_more_poll(bus)
            assert bus.reads >= reads + 5 * 2  # it did poll
            assert await tocks(c, paths) == before

            bus.set(T28, "temperature", "  21.5625")
            await wait_value(c, key(T28), 21.5625)
            after = await tocks(c, paths)
            assert after[key(T28)] != before[key(T28)]
            assert {p: t for p, t in after.items() if p != key(T28)} == {
                p: t for p, t in before.items() if p != key(T28)
            }


async def test_polls_at_the_configured_interval(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s:
        async with running_gateway(s, bus, interval=2.5):
            t0, n0 = trio.current_time(), bus.listings
            await bus.wait_listings(n0 + 4)
            assert trio.current_time() - t0 == pytest.approx(4 * 2.5, abs=0.01)
            # the connection is let go after every poll (the 4th one is running now)
            assert bus.idles == bus.listings - 1


async def test_disappearing_device_is_marked_once(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus), c.watch(()) as watch:
            it = watch.__aiter__()
            bus.remove(T10)
            for _ in range(4):
                await one_more_poll(bus)
            assert await events_until_marker(it, c) == [(key(T10, "present"), False)]
            assert (await c.get(key(T10))).value == 22.0  # the last value stays

            bus.add(T10, {"temperature": "22"})
            await one_more_poll(bus)
            # back: present again; the unchanged value is not rewritten
            assert await events_until_marker(it, c) == [(key(T10, "present"), True)]


async def test_read_errors_are_logged_once_and_polling_goes_on(autojump_clock, caplog):
    caplog.set_level(logging.WARNING, logger=gw.__name__)
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus):
            bus.fail(T28, "CRC error")
            bus.set(T28, "temperature", "30")
            for _ in range(3):
                await one_more_poll(bus)
            bus.set(T10, "temperature", "23.5")  # the other device carries on
            await wait_value(c, key(T10), 23.5)
            for _ in range(3):
                await one_more_poll(bus)
            assert (await c.get(key(T28))).value == 21.5
            assert (await c.get(key(T28, "present"))).value is True  # listed, just failing
            msgs = [r.getMessage() for r in caplog.records if T28 in r.getMessage()]
            assert len(msgs) == 1 and "CRC error" in msgs[0], msgs

            bus.heal(T28)
            await wait_value(c, key(T28), 30.0)
            msgs = [r.getMessage() for r in caplog.records if T28 in r.getMessage()]
            assert len(msgs) == 2 and "readable again" in msgs[1], msgs


async def test_owserver_down_is_retried(autojump_clock, caplog):
    caplog.set_level(logging.WARNING, logger=gw.__name__)
    bus = sample_bus()
    bus.down = True
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus):  # started although the first poll failed
            for _ in range(3):
                await one_more_poll(bus)
            assert await c.list(ROOT) == []
            assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1

            bus.down = False
            await wait_value(c, key(T28), 21.5)
            last = [r for r in caplog.records if r.name == gw.__name__][-1]
            assert "reachable again" in last.getMessage()

            # down while running: no device is declared gone, the values stay
            async with c.watch(()) as watch:
                bus.down = True
                for _ in range(3):
                    await one_more_poll(bus)
                assert await events_until_marker(watch.__aiter__(), c) == []
            assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 2


async def test_restart_writes_nothing_new_but_notices_what_vanished(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus):
            pass
        paths = [key(T28), key(T28, "present"), key(T10), key(T10, "present")]
        before = await tocks(c, paths)
        bus.remove(T10)  # while no gateway runs
        async with running_gateway(s, bus):
            after = await tocks(c, paths)
            assert (await c.get(key(T10, "present"))).value is False
            assert after[key(T10, "present")] != before[key(T10, "present")]
            del after[key(T10, "present")], before[key(T10, "present")]
            assert after == before


# --- real owserver, real processes ------------------------------------------------------


@pytest.fixture
def owserver():
    with Owserver() as ows:
        yield ows


@pytest.mark.slow
@needs_owserver
async def test_owserver_bus_against_a_real_owserver(owserver):
    bus = OwserverBus(owserver.host, owserver.port)
    try:
        assert await bus.devices() == sorted(TESTER_DEVICES)
        for device in TESTER_DEVICES:
            for _ in range(3):  # --tester readings are constant: exact values
                value = gw.typed_value(await bus.read(device, "temperature"))
                assert value == TESTER_TEMPERATURES[device] and math.isfinite(value)
        assert await bus.read(T28, "type") == "DS18B20"
        with pytest.raises(OneWireError) as info:
            await bus.read(T28, "no_such_attribute")
        assert not info.value.unreachable
        with pytest.raises(OneWireError) as info:
            await bus.write(T28, "type", "DS0000")  # read-only
        assert not info.value.unreachable

        # the connection is dropped between polls, or owserver would not stop on SIGTERM
        await bus.idle()
        assert await owserver.astop() == 0 and owserver.terminations == 1
        with pytest.raises(OneWireError) as info:
            await bus.devices()
        assert info.value.unreachable and str(owserver.port) in str(info.value)
        await owserver.astart()  # same port: the same bus object reconnects
        assert gw.typed_value(await bus.read(T28, "temperature")) == 4.1
    finally:
        await bus.aclose()


async def run(srv: ServerProcess, cmd: str):
    return await trio.to_thread.run_sync(srv.run, cmd)


@pytest.mark.slow
@needs_owserver
async def test_gateway_command_feeds_a_server_process(owserver, tmp_path):
    srv = ServerProcess(tmp_path, "owfsnode")
    try:
        await trio.to_thread.run_sync(srv.start, "-i", "Testing")
        cmd = (
            f"exec distkv-gateway -C gateways.owfs.port={owserver.port} "
            "-C gateways.owfs.interval=0.5 owfs"
        )
        with srv.spawn(cmd) as proc:
            assert await trio.to_thread.run_sync(read_line, proc.stdout) == "Running.\n"
            # Running. comes after the first poll, so the values are there already
            data = "distkv client data onewire.28:.000028D70100"
            assert ok(await run(srv, f"{data}.temperature")) == "4.1\n"
            assert ok(await run(srv, f"{data}.present")) == "true\n"
            out = ok(await run(srv, "distkv client data onewire get -r -d _"))
            assert out == (
                "10.000010EF0000:\n  present:\n    _: true\n  temperature:\n    _: 1.6\n"
                "28.000028D70100:\n  present:\n    _: true\n  temperature:\n    _: 4.1\n"
            )

            # owserver goes away: one warning, the gateway keeps running and recovers
            # the gateway holds no connection between polls, so owserver stops cleanly
            # (exit 0, no SIGKILL; owserver itself sometimes ignores a first SIGTERM,
            # so how many it took is not asserted)
            assert await owserver.astop() == 0
            line = await trio.to_thread.run_sync(read_line, proc.stderr)
            assert "unreachable" in line and str(owserver.port) in line, line
            await owserver.astart()
            line = await trio.to_thread.run_sync(read_line, proc.stderr)
            assert "reachable again" in line, line
            assert proc.poll() is None
            assert ok(await run(srv, f"{data}.present")) == "true\n"

            proc.terminate()  # SIGTERM: a clean stop
            assert await trio.to_thread.run_sync(proc.wait, 10) == 0
    finally:
        srv.stop()
