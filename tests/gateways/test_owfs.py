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
from hypothesis import given, settings
from hypothesis import strategies as st

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


def tracker(known=(), now=0.0, **over):
    return gw.SensorTracker(gw.check_config(cfg(**over)), known, now)


def listing(*devices, aliases=None):
    return {0: {d: (aliases or {}).get(d) for d in devices}}


def temps(**by_device):
    return {(d, "temperature"): v for d, v in by_device.items()}


def test_tracker_writes_only_changes():
    t = tracker()
    ch = t.update(0, listing(T28, T10, PIO), {(T28, "temperature"): "21.5", (T10, "temperature"): "22"})
    assert ch.writes == [
        ((T10, "present"), True),
        ((T28, "present"), True),
        ((T10, "temperature"), 22.0),
        ((T28, "temperature"), 21.5),
    ]
    ch = t.update(10, listing(T28, T10), {(T28, "temperature"): " 21.5 ", (T10, "temperature"): "22.0"})
    assert ch.writes == [] and ch.deletes == []
    ch = t.update(20, listing(T28), {(T28, "temperature"): "21.75"})
    assert ch.writes == [((T28, "temperature"), 21.75), ((T10, "present"), False)]
    assert t.update(30, listing(T28), {(T28, "temperature"): "21.75"}).writes == []  # once
    ch = t.update(31, listing(T28, T10), {(T28, "temperature"): "21.75", (T10, "temperature"): "22"})
    assert ch.writes == [((T10, "present"), True)]  # value unchanged while it was away


def test_tracker_seeded_from_the_tree():
    known = [
        ((T28, "present"), True),
        ((T28, "temperature"), 21.5),
        ((T10, "present"), True),
        ((T10, "temperature"), True),  # True == 1.0, but a bool is not our reading
    ]
    t = tracker(known)
    ch = t.update(1, listing(T28), {(T28, "temperature"): "21.5"})
    assert ch.writes == [((T10, "present"), False)]
    ch = t.update(2, listing(T28, T10), {(T28, "temperature"): "21.5", (T10, "temperature"): "1"})
    assert ch.writes == [((T10, "present"), True), ((T10, "temperature"), 1.0)]


def test_tracker_errors_and_outages_are_news_once():
    t = tracker(attributes={"28": ["temperature", "type"]})
    ch = t.update(0, listing(T28), {(T28, "temperature"): "21.5"}, {T28: "CRC error"})
    assert ch.writes == [((T28, "present"), True), ((T28, "temperature"), 21.5)]
    assert [n for n in ch.notes if "CRC error" in n]
    assert not t.update(1, listing(T28), {}, {T28: "CRC error again"}).notes
    assert t.lost(0, "down") is True
    assert t.lost(0, "still down") is False
    ch = t.update(2, listing(T28), {(T28, "temperature"): "21.5", (T28, "type"): "DS18B20"})
    assert any("reachable again" in n for n in ch.notes)
    assert any("readable again" in n for n in ch.notes)
    assert ch.writes == [((T28, "type"), "DS18B20")]
    assert not t.update(3, listing(T28), {}).notes


def test_tracker_drops_implausible_readings_and_counts_them():
    t = tracker()
    t.update(0, listing(T28), temps(**{T28: "21.5"}))
    for n, raw in enumerate(["85", "85.0", "-60", "130"], start=1):
        ch = t.update(n, listing(T28), temps(**{T28: raw}))
        assert ch.writes == [((T28, "dropped"), n)]
    assert t.tree[T28, "temperature"] == 21.5
    ch = t.update(9, listing(T28), temps(**{T28: "84.5"}))
    assert ch.writes == [((T28, "temperature"), 84.5)]


def test_tracker_rounds_and_keeps_a_deadband():
    t = tracker(rules={"temperature": {"deadband": 0.2, "round": 1}})
    t.update(0, listing(T28), temps(**{T28: "21.54"}))
    assert t.tree[T28, "temperature"] == 21.5
    assert t.update(1, listing(T28), temps(**{T28: "21.66"})).writes == []  # 21.7: within
    ch = t.update(2, listing(T28), temps(**{T28: "21.76"}))
    assert ch.writes == [((T28, "temperature"), 21.8)]


def test_tracker_uses_aliases_as_tree_names():
    t = tracker()
    ch = t.update(0, listing(T28, aliases={T28: "livingroom"}), {(T28, "temperature"): "4.1"})
    assert ch.writes == [(("livingroom", "present"), True), (("livingroom", "temperature"), 4.1)]
    assert t.wanted(T28, "livingroom") == ("temperature",)


def test_tracker_marks_stale_and_clears_it():
    t = tracker(interval=10, stale_after=3)
    t.update(0, listing(T28), temps(**{T28: "21.5"}))
    assert t.check(30).writes == []  # three intervals: not yet
    ch = t.check(31)  # all owservers down for more than three intervals
    assert ch.writes == [((T28, "stale"), ["temperature"])]
    assert ch.errors == [(T28, "no fresh reading of temperature")]
    assert t.tree[T28, "present"] is True  # nobody could tell it is gone
    assert t.check(40).writes == [] and t.check(40).errors == []
    ch = t.update(41, listing(T28), {}, {T28: "CRC error"})  # read errors: still stale
    assert ch.deletes == []
    ch = t.update(50, listing(T28), temps(**{T28: "21.5"}))
    assert ch.deletes == [(T28, "stale")] and ch.errors == [(T28, None)]


def test_tracker_marks_gone_devices_or_removes_them():
    for remove in (False, True):
        t = tracker(gone_after=60, remove_gone=remove, stale_after=100)
        t.update(0, listing(T28, T10), temps(**{T28: "1", T10: "2"}))
        assert t.update(30, listing(T28), temps(**{T28: "1"})).writes == [((T10, "present"), False)]
        ch = t.update(61, listing(T28), temps(**{T28: "1"}))
        if remove:
            assert ch.writes == []
            assert sorted(ch.deletes) == [(T10, "present"), (T10, "temperature")]
        else:
            assert ch.writes == [((T10, "gone"), True)] and ch.deletes == []
        ch = t.update(70, listing(T28, T10), temps(**{T28: "1", T10: "2"}))
        if remove:
            assert ch.writes == [((T10, "present"), True), ((T10, "temperature"), 2.0)]
        else:
            assert ch.writes == [((T10, "present"), True)] and ch.deletes == [(T10, "gone")]


def test_tracker_seeded_devices_never_listed_become_gone():
    known = [((T10, "present"), True), ((T10, "temperature"), 22.0)]
    t = tracker(known, now=0, gone_after=60, remove_gone=True, stale_after=100)
    t.update(10, listing(T28), temps(**{T28: "1"}))
    ch = t.update(61, listing(T28), temps(**{T28: "1"}))
    assert sorted(ch.deletes) == [(T10, "present"), (T10, "temperature")]


def test_tracker_per_device_interval_and_simultaneous_conversion():
    t = tracker(interval=10, devices={T10: {"interval": 60}}, simultaneous=2)
    due, simultaneous = t.plan({T28: None, T10: None, PIO: None}, 0)
    assert due == {T28: ("temperature",), T10: ("temperature",)} and simultaneous
    t.update(0, listing(T28, T10), temps(**{T28: "1", T10: "2"}))
    due, simultaneous = t.plan({T28: None, T10: None}, 10)
    assert due == {T28: ("temperature",)} and not simultaneous
    assert t.plan({T28: None, T10: None}, 60)[0] == {T28: ("temperature",), T10: ("temperature",)}


def test_tracker_outputs_follow_the_tree_and_show_mismatch():
    out = {"device": PIO, "attribute": "PIO.A", "path": "home.light"}
    t = tracker(outputs=[out], attributes={"3A": ["PIO.A"]})
    ch = t.update(0, listing(PIO), {(PIO, "PIO.A"): "0"})
    assert ch.outputs == []  # nothing desired yet
    assert t.want(PIO, "PIO.A", True).outputs == [(PIO, "PIO.A", "1")]
    ch = t.update(10, listing(PIO), {(PIO, "PIO.A"): "1"})  # read back: it followed
    assert ch.writes == [((PIO, "PIO.A"), 1.0)] and ch.outputs == []
    assert t.want(PIO, "PIO.A", True).outputs == []  # agrees already
    assert t.want(PIO, "PIO.A", False).outputs == [(PIO, "PIO.A", "0")]
    ch = t.update(20, listing(PIO), {(PIO, "PIO.A"): "1"})  # the device did not follow
    assert ch.writes == [((PIO, "mismatch"), ["PIO.A"])]
    assert ch.outputs == [(PIO, "PIO.A", "0")]  # and it is tried again
    ch = t.update(30, listing(PIO), {(PIO, "PIO.A"): "0"})
    assert ch.deletes == [(PIO, "mismatch")]


@settings(max_examples=200, deadline=None)
@given(
    deadband=st.floats(0, 5),
    readings=st.lists(st.floats(-50, 120, allow_nan=False), min_size=1, max_size=40),
)
def test_deadband_bounds_the_tree(deadband, readings):
    """Whatever the readings, the tree is never further than the deadband from the
    last one (no rounding), and an unchanged reading never writes."""
    t = tracker(rules={"temperature": {"deadband": deadband, "min": None, "max": None, "drop": []}})
    for i, r in enumerate(readings):
        ch = t.update(i, listing(T28), temps(**{T28: repr(r)}))
        assert abs(t.tree[T28, "temperature"] - r) <= deadband
        again = t.update(i + 0.5, listing(T28), temps(**{T28: repr(r)}))
        assert again.writes == []
        assert ch.writes == [] or ch.writes[-1][1] == t.tree[T28, "temperature"]


@settings(max_examples=100, deadline=None)
@given(
    digits=st.integers(0, 3),
    deadband=st.floats(0, 2),
    readings=st.lists(st.floats(-50, 120, allow_nan=False), min_size=1, max_size=30),
)
def test_deadband_with_rounding(digits, deadband, readings):
    rule = {"deadband": deadband, "round": digits, "min": None, "max": None, "drop": []}
    t = tracker(rules={"temperature": rule})
    for i, r in enumerate(readings):
        t.update(i, listing(T28), temps(**{T28: repr(r)}))
        got = t.tree[T28, "temperature"]
        assert got == round(got, digits)
        assert abs(got - round(r, digits)) <= deadband + 1e-9


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
        {"intervall": 3},
        {"rules": {"temperature": {"deadbnad": 1}}},
        {"rules": {"temperature": {"min": 10, "max": 0}}},
        {"servers": [{"host": "a", "port": 0}]},
        {"outputs": [{"device": PIO, "attribute": "PIO.A"}]},
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
        async with running_gateway(s, bus, interval=2.5, simultaneous=0):
            t0, n0 = trio.current_time(), bus.listings
            await bus.wait_listings(n0 + 4)
            assert trio.current_time() - t0 == pytest.approx(4 * 2.5, abs=0.01)
            # the connection is let go after every poll (the 4th one is running now)
            assert bus.idles == bus.listings - 1


async def test_disappearing_device_is_marked_once_then_stale(autojump_clock):
    bus = sample_bus()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with running_gateway(s, bus), c.watch(()) as watch:
            it = watch.__aiter__()
            bus.remove(T10)
            await one_more_poll(bus)  # two polls: not yet stale (after 3 intervals)
            assert await events_until_marker(it, c) == [(key(T10, "present"), False)]
            assert (await c.get(key(T10))).value == 22.0  # the last value stays
            for _ in range(3):  # more than stale_after (3) intervals without a reading
                await one_more_poll(bus)
            events = await events_until_marker(it, c)
            assert events[0] == (key(T10, "stale"), ["temperature"])
            (epath, record), = events[1:]
            assert tuple(epath[:3]) == (".distkv", "error", "owfs") and record["path"] == ROOT + (T10,)
            assert "temperature" in record["message"]

            bus.add(T10, {"temperature": "22"})
            await one_more_poll(bus)
            # back: present again, no longer stale; the unchanged value is not rewritten
            assert await events_until_marker(it, c) == [
                (key(T10, "present"), True),
                (key(T10, "stale"), None),
                (epath, None),
            ]


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

            # down while running: no device is declared gone, the values stay, and
            # after stale_after (3) intervals they are marked stale
            async with c.watch(()) as watch:
                it = watch.__aiter__()
                bus.down = True
                await one_more_poll(bus)  # two polls: not yet stale (after 3 intervals)
                assert await events_until_marker(it, c) == []
                for _ in range(2):
                    await one_more_poll(bus)
                events = [e for e in await events_until_marker(it, c) if e[0][0] == "onewire"]
                assert events == [
                    (key(T10, "stale"), ["temperature"]),
                    (key(T28, "stale"), ["temperature"]),
                ]
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


@pytest.mark.slow
@needs_owserver
async def test_aliases_simultaneous_conversion_and_outputs_on_a_real_owserver(tmp_path):
    """--tester=10,28,3A with an alias file: the aliased sensor lands under its alias,
    the two temperatures come from one simultaneous conversion (latesttemp), and the
    DS2413's PIO.A is written from a tree entry. The tester's PIO does not keep what
    is written (it reads back 0), so a desired "on" shows as a mismatch, and "off"
    clears it."""
    alias = tmp_path / "alias"
    alias.write_text(f"{T28} = livingroom\n")
    with Owserver(devices=("10", "28", "3A"), args=[f"--alias={alias}"]) as ows:
        bus = OwserverBus(ows.host, ows.port)
        listing = await bus.listing()
        pio = next(d for d in listing if d.startswith("3A."))
        assert listing == {T10: None, T28: "livingroom", pio: None}
        async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
            await c.set(P("home.light"), True)
            over = {
                "port": ows.port,
                "interval": 0.2,
                "conversion": 0.1,
                "attributes": {"3A": ["PIO.A"]},
                "outputs": [{"device": pio, "attribute": "PIO.A", "path": "home.light"}],
            }
            async with open_memory_client(s) as gwc, trio.open_nursery() as n:
                await n.start(gw.serve, gwc, cfg(**over))
                assert (await c.get(ROOT + ("livingroom", "temperature"))).value == 4.1
                assert (await c.get(key(T10))).value == 1.6
                assert not (await c.list(ROOT + (T28,)))  # the id is not used
                assert (await c.get(ROOT + (pio, "PIO.A"))).value == 0.0
                await wait_value(c, ROOT + (pio, "mismatch"), ["PIO.A"], timeout=10)
                await c.set(P("home.light"), False)
                await wait_value(c, ROOT + (pio, "mismatch"), "<none>", timeout=10)
                n.cancel_scope.cancel()
        await bus.aclose()
