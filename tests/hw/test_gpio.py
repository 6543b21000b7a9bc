"""GPIO: the pure debouncer (with a property test), the simulated chip behind the
GPIO gateway (in-process server, trio's virtual clock), and the real gpiod backend as
far as it goes without a chip."""

from __future__ import annotations

import functools
import sys

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.config import merge
from distkv.exceptions import ConfigError
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P
from hw import gpiogw
from hw.gpio import (
    Debouncer,
    GpiodChip,
    GpioError,
    LineSpec,
    SimulatedChip,
    gpiod_config,
    import_gpiod,
)

BUTTON, RELAY = 22, 17


def cfg(**over):
    base = {
        "simulated": True,
        "path": "home.gpio",
        "inputs": {"button": {"line": BUTTON, "debounce": 0.05}},
        "outputs": {"relay": {"line": RELAY, "follow": "home.light"}},
    }
    return merge(gpiogw.DEFAULTS, merge(base, over))


# --- the debouncer ----------------------------------------------------------------


def test_debouncer_reports_a_level_that_held():
    d = Debouncer(0.05, level=False)
    assert d.feed(True, 1.0) == pytest.approx(1.05)
    assert d.settle(1.04) is None
    assert d.settle(1.05) is True
    assert d.settle(2.0) is None  # once
    assert d.feed(False, 3.0) == pytest.approx(3.05)
    assert d.feed(True, 3.01) is None  # bounced back before it counted
    assert d.settle(4.0) is None


def test_debouncer_zero_reports_every_change():
    d = Debouncer(0, level=False)
    assert d.feed(True, 1.0) == 1.0 and d.settle(1.0) is True
    assert d.feed(False, 1.0) == 1.0 and d.settle(1.0) is False


@settings(max_examples=300, deadline=None)
@given(
    debounce=st.floats(0, 1),
    steps=st.lists(
        st.tuples(st.floats(0.001, 2), st.booleans(), st.floats(0, 1)), min_size=1, max_size=40
    ),
)
def test_no_pulse_shorter_than_debounce_is_reported(debounce, steps):
    """A raw signal (level changes after gaps), settle() called at the deadline feed()
    returns when that comes before the next change, and at an arbitrary point in each
    gap: every reported level was the raw level for the whole debounce time before
    the report, and every level that held for the debounce time was reported."""
    d = Debouncer(debounce, level=False)
    t, raw, since = 0.0, False, -1e9
    reports = []
    pending = None
    for gap, level, frac in steps:
        nxt = t + gap
        for when in sorted({x for x in (pending, t + frac * gap) if x is not None and x < nxt}):
            got = d.settle(when)
            if got is not None:
                reports.append((when, got))
                assert got == raw and when - since >= debounce
        held = since + debounce < nxt
        if held and raw != (reports[-1][1] if reports else False):
            assert pending is not None and pending < nxt  # it was due before the change
        t = nxt
        if level != raw:
            raw, since = level, t
        pending = d.feed(level, t)


# --- the gateway on a simulated chip -----------------------------------------------


async def test_input_edges_reach_the_tree_debounced(autojump_clock):
    chip = SimulatedChip()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        async with open_memory_client(s) as gwc, trio.open_nursery() as n:
            await n.start(functools.partial(gpiogw.serve, chip=chip), gwc, cfg())
            assert (await c.get(P("home.gpio.button"))).value is False
            async with c.watch(P("home.gpio.button")) as w:
                it = w.__aiter__()
                for _ in range(5):  # contact bounce: 5 ms pulses
                    chip.drive(BUTTON, True)
                    await trio.sleep(0.005)
                    chip.drive(BUTTON, False)
                    await trio.sleep(0.005)
                chip.drive(BUTTON, True)  # pressed and held
                t0 = trio.current_time()
                ev = await it.__anext__()
                assert ev.value is True
                assert trio.current_time() - t0 == pytest.approx(0.05, abs=0.01)
                with trio.move_on_after(1):  # nothing else: the bounces were dropped
                    ev = await it.__anext__()
                    pytest.fail(f"unexpected event {ev}")
            n.cancel_scope.cancel()


async def test_output_follows_its_tree_entry(autojump_clock):
    chip = SimulatedChip()
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await c.set(P("home.light"), True)
        async with open_memory_client(s) as gwc, trio.open_nursery() as n:
            await n.start(functools.partial(gpiogw.serve, chip=chip), gwc, cfg())
            assert chip.level(RELAY) is True
            assert (await c.get(P("home.gpio.relay"))).value is True
            await c.set(P("home.light"), "off")
            with trio.fail_after(5):
                while chip.level(RELAY):
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()


async def test_active_low_lines_are_logical(autojump_clock):
    chip = SimulatedChip()
    over = {
        "inputs": {"button": {"active_low": True, "bias": "pull-up", "debounce": 0}},
        "outputs": {"relay": {"active_low": True}},
    }
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await c.set(P("home.light"), True)
        async with open_memory_client(s) as gwc, trio.open_nursery() as n:
            await n.start(functools.partial(gpiogw.serve, chip=chip), gwc, cfg(**over))
            assert (await c.get(P("home.gpio.button"))).value is False  # pulled up: idle
            assert chip.level(RELAY) is False  # active low: on is a low line
            chip.drive(BUTTON, False)  # pressed pulls it low
            with trio.fail_after(5):
                while (await c.get(P("home.gpio.button"))).value is not True:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()


def test_config_errors_name_the_key():
    for bad, where in [
        ({"inputs": {"button": {"debounse": 1}}}, "gateways.gpio.inputs.button.debounse"),
        ({"inputs": {"button": {"bias": "up"}}}, "gateways.gpio.inputs.button.bias"),
        ({"outputs": {"relay": {"line": BUTTON}}}, "gateways.gpio.outputs.relay.line"),
        ({"inputs": {"x": {"debounce": 0}}}, "gateways.gpio.inputs.x.line"),
        ({"chipp": "/dev/x"}, "gateways.gpio.chip"),
    ]:
        with pytest.raises(ConfigError) as info:
            gpiogw.check_config(cfg(**bad))
        msg = str(info.value)
        assert where in msg and "\n" not in msg, msg


def test_simulated_lines_cannot_be_requested_twice():
    chip = SimulatedChip()
    specs = gpiogw.check_config(cfg())["specs"]
    chip.request(specs)
    with pytest.raises(GpioError, match="busy"):
        chip.request(specs)


# --- the real backend, without a chip ---------------------------------------------


def test_gpiod_request_config_builds():
    gpiod = pytest.importorskip("gpiod")
    from gpiod.line import Bias, Direction, Edge, Value

    specs = {
        "button": LineSpec(BUTTON, bias="pull-up", active_low=True),
        "relay": LineSpec(RELAY, output=True, initial=True),
    }
    config = gpiod_config(specs, gpiod)
    assert config[BUTTON].direction == Direction.INPUT
    assert config[BUTTON].edge_detection == Edge.BOTH
    assert config[BUTTON].bias == Bias.PULL_UP and config[BUTTON].active_low
    assert config[RELAY].direction == Direction.OUTPUT
    assert config[RELAY].output_value == Value.ACTIVE


def test_gpiod_without_a_chip_is_a_one_line_error(tmp_path):
    pytest.importorskip("gpiod")
    chip = GpiodChip(str(tmp_path / "gpiochip9"))
    with pytest.raises(GpioError) as info:
        chip.request({"relay": LineSpec(RELAY, output=True)})
    assert "gpiochip9" in str(info.value) and "\n" not in str(info.value)


def test_missing_gpiod_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod raises ImportError
    with pytest.raises(GpioError, match=r"pip install 'distkv\[gpio\]'"):
        import_gpiod()
    with pytest.raises(GpioError, match="gpiod"):
        gpiogw.open_chip(gpiogw.check_config(cfg(simulated=False)))
