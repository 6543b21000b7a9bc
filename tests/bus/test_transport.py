"""Transport conformance: every test here runs on the memory bus and on MQTT.

Synchronisation is by events and messages only; ``trio.fail_after`` is a safety net.
To show that something did *not* arrive, a test sends a marker afterwards over a path
that is ordered behind it and checks that the marker comes first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from distkv.bus import (
    Bus,
    BusClosedError,
    BusOverflowError,
    Message,
    Subscription,
    backoff_delays,
    topic_matches,
    validate_pattern,
    validate_topic,
)
from distkv.bus.memory import MemoryNetwork

if TYPE_CHECKING:
    from conftest import BusEnv  # tests/bus/conftest.py (no package: not importable)

# Safety net only; tests synchronise on events and messages.
TIMEOUT = 10


async def recv(sub: Subscription) -> Message:
    with trio.fail_after(TIMEOUT):
        return await sub.receive()


def buffered(sub: Subscription) -> list[Message]:
    out = []
    while True:
        try:
            out.append(sub.receive_nowait())
        except trio.WouldBlock:
            return out


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    "pattern,topic,expected",
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/#", "b/a", False),
        ("#", "a/b", True),
        ("a/b/#", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matches(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a/+", "a/#", "a\x00b"])
def test_validate_topic_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_topic(bad)


@pytest.mark.parametrize("bad", ["a/#/b", "a+/b", "a/b#", "", "/x"])
def test_validate_pattern_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_pattern(bad)


def test_backoff_is_exponential_and_capped() -> None:
    gen = backoff_delays(0.1, 5.0)
    delays = [next(gen) for _ in range(10)]
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert max(delays) == 5.0
    assert delays[-1] == 5.0


# ------------------------------------------------------------------- conformance


async def test_roundtrip(env: BusEnv) -> None:
    async with env.connected("a", "b") as (a, b), b.subscribe("x/#") as sub:
        await a.publish("x/y", b"hello")
        await a.publish("x/z", b"\x00\xffbinary", qos=0)
        assert await recv(sub) == Message("x/y", b"hello", retained=False)
        assert await recv(sub) == Message("x/z", b"\x00\xffbinary", retained=False)
        assert a.stats.published == 2
        assert b.stats.received == 2


async def test_qos0_subscription_gets_qos1_publications(env: BusEnv) -> None:
    """A QoS 0 subscription (no PUBACK per delivery) still receives everything, in
    order, while the link is up; a bad QoS is refused."""
    async with env.connected("a", "b") as (a, b), b.subscribe("x/#", qos=0) as sub:
        for i in range(50):
            await a.publish("x/y", b"%d" % i)
        for i in range(50):
            assert await recv(sub) == Message("x/y", b"%d" % i)
        with pytest.raises(ValueError):
            b.subscribe("x/#", qos=2)


async def test_wildcards(env: BusEnv) -> None:
    async with env.connected("a", "b") as (a, b):
        async with (
            b.subscribe("w/+/c") as plus,
            b.subscribe("w/#") as hash_,
            b.subscribe("w/b") as exact,
            b.subscribe("end") as end,
        ):
            topics = ["w/a/c", "w/b", "w/b/c/d", "w/x/c", "v/a/c", "w"]
            for t in topics:
                await a.publish(t, t.encode())
            # Ordered behind all copies of the messages above.
            await a.publish("end", b"")
            await recv(end)
            assert [m.topic for m in buffered(plus)] == ["w/a/c", "w/x/c"]
            assert [m.topic for m in buffered(hash_)] == ["w/a/c", "w/b", "w/b/c/d", "w/x/c", "w"]
            assert [m.topic for m in buffered(exact)] == ["w/b"]


async def test_overlapping_subscriptions_get_one_copy_each(env: BusEnv) -> None:
    if env.kind == "mqtt4":
        pytest.skip("MQTT 3.1.1 has no subscription ids: one copy per matching pattern")
    async with env.connected("a", "b") as (a, b):
        await a.publish("ol/r", b"state", retain=True)
        await a.drain()
        async with b.subscribe("ol/#") as s1, b.subscribe("end") as end:
            assert await recv(s1) == Message("ol/r", b"state", retained=True)
            async with b.subscribe("ol/+") as s2:
                # the retained copy goes to the new subscription only
                assert await recv(s2) == Message("ol/r", b"state", retained=True)
                await a.publish("ol/live", b"1")
                await a.publish("end", b"")
                await recv(end)
                assert buffered(s1) == [Message("ol/live", b"1")]
                assert buffered(s2) == [Message("ol/live", b"1")]


async def test_overlapping_subscriptions_under_mqtt_311(env: BusEnv) -> None:
    """What distkv.bus promises for v3.1.1 (no subscription ids, matched locally):
    every matching subscription gets each copy the broker sends, which with mosquitto
    is one per message; a retained replay reaches every matching subscription."""
    if env.kind != "mqtt4":
        pytest.skip("only MQTT 3.1.1 lacks subscription ids")
    async with env.connected("a", "b") as (a, b):
        await a.publish("o3/r", b"state", retain=True)
        await a.drain()
        async with b.subscribe("o3/#") as s1, b.subscribe("x") as s3:
            assert await recv(s1) == Message("o3/r", b"state", retained=True)
            async with b.subscribe("o3/+") as s2:
                retained = Message("o3/r", b"state", retained=True)
                assert await recv(s2) == retained
                assert await recv(s1) == retained  # the replay reaches s1 as well
                await a.publish("o3/live", b"1")
                await a.publish("x", b"")
                assert await recv(s3) == Message("x", b"")
                assert buffered(s1) == [Message("o3/live", b"1")]
                assert buffered(s2) == [Message("o3/live", b"1")]


async def test_no_local_skips_own_publications(env: BusEnv) -> None:
    """``no_local``: the broker does not send a bus its own publications (saves the
    replicating node a wake-up per update); others' still arrive. Under MQTT 3.1.1 it
    is not available, and own publications still arrive (documented)."""
    async with env.connected("a", "b") as (a, b):
        async with a.subscribe("nl/+", no_local=True) as sub:
            await a.publish("nl/a", b"own")
            await b.publish("nl/b", b"other")
            first = await recv(sub)
            if env.kind == "mqtt4":
                assert first == Message("nl/a", b"own")
                first = await recv(sub)
            assert first == Message("nl/b", b"other")


async def test_large_and_small_messages_interleaved(env: BusEnv) -> None:
    """Packets larger than one read of the socket, and many small ones arriving in one
    read, are framed correctly (the MQTT reader buffers what it receives)."""
    big = bytes(range(256)) * 1000  # 256 kB
    async with env.connected("a", "b") as (a, b), b.subscribe("li/#") as sub:
        sent = []
        for i in range(30):
            payload = big + b"%d" % i if i % 10 == 3 else b"%d" % i
            sent.append(Message(f"li/{i % 4}", payload))
            a.publish_nowait(f"li/{i % 4}", payload)
        assert [await recv(sub) for _ in sent] == sent


async def test_same_pattern_twice(env: BusEnv) -> None:
    async with env.connected("a", "b") as (a, b), b.subscribe("s/#") as s1:
        async with b.subscribe("s/#") as s2:
            await a.publish("s/1", b"x")
            assert await recv(s1) == Message("s/1", b"x")
            assert await recv(s2) == Message("s/1", b"x")
        # leaving one subscription keeps the other
        await a.publish("s/2", b"y")
        assert await recv(s1) == Message("s/2", b"y")


async def test_roots_are_separate_networks(env: BusEnv) -> None:
    other_root = env.root + "x"
    async with env.connected("a", "b") as (a, b), b.subscribe("#") as sub:
        # same broker/network, different root
        async with env.connected("c", root=other_root) as (c,):
            await c.publish("iso/x", b"other network")
            await c.drain()
            await a.publish("iso/y", b"mine")
            assert await recv(sub) == Message("iso/y", b"mine")


async def test_retained_presence_seen_by_late_subscriber(env: BusEnv) -> None:
    async with env.connected("a") as (a,):
        await a.set_presence(b"a is here")
        await a.drain()
        async with env.connected("late") as (late,), late.subscribe("presence/+") as sub:
            assert await recv(sub) == Message("presence/a", b"a is here", retained=True)


async def test_retained_cleared_by_empty_payload(env: BusEnv) -> None:
    async with env.connected("a", "b") as (a, b):
        await a.publish("r/x", b"v", retain=True)
        await a.publish("r/x", b"", retain=True)
        await a.drain()
        async with b.subscribe("r/#") as sub:
            await a.publish("r/marker", b"m")
            assert await recv(sub) == Message("r/marker", b"m")


async def test_will_on_crash(env: BusEnv) -> None:
    async with env.connected("watch") as (w,), w.subscribe("presence/+") as sub:
        async with env.connected("a", will=b"a offline") as (a,):
            await a.set_presence(b"a online")
            assert (await recv(sub)).payload == b"a online"
            await a.crash()
            assert a.closed
            assert await recv(sub) == Message("presence/a", b"a offline", retained=False)
            with pytest.raises(BusClosedError):
                a.publish_nowait("x", b"")
        # and the broker keeps it for late comers
        async with env.connected("late") as (late,), late.subscribe("presence/a") as s2:
            assert await recv(s2) == Message("presence/a", b"a offline", retained=True)


async def test_clean_close_publishes_offline(env: BusEnv) -> None:
    async with env.connected("watch") as (w,), w.subscribe("presence/a") as sub:
        async with env.connected("a", will=b"bye") as (a,):
            await a.set_presence(b"hi")
            assert (await recv(sub)).payload == b"hi"
        assert await recv(sub) == Message("presence/a", b"bye", retained=False)


async def test_dropped_connection_fires_will_then_recovers(env: BusEnv) -> None:
    async with env.connected("watch") as (w,), w.subscribe("presence/+") as pres:
        async with env.connected("a", will=b"off") as (a,), a.subscribe("x/#") as xs:
            await a.set_presence(b"on")
            assert (await recv(pres)).payload == b"on"
            a.drop_connection()
            # the broker publishes the will, then the reconnected bus its presence
            assert (await recv(pres)).payload == b"off"
            assert (await recv(pres)).payload == b"on"
            with trio.fail_after(TIMEOUT):
                await a.wait_connected()
            assert a.stats.disconnects >= 1
            # subscriptions survived the reconnect
            await w.publish("x/after", b"1")
            assert await recv(xs) == Message("x/after", b"1")


@pytest.mark.parametrize("qos", [0, 1])
async def test_ordering_per_publisher(env: BusEnv, qos: int) -> None:
    n = 2000
    async with env.connected("a", "b") as (a, b), b.subscribe("o/#") as sub:
        for i in range(n):
            await a.publish(f"o/{i % 7}", b"%d" % i, qos=qos)
        got = [int((await recv(sub)).payload) for _ in range(n)]
        assert got == list(range(n))
        assert sub.dropped == 0


async def test_handler_subscription(env: BusEnv) -> None:
    """A handler gets every message in order, in batches, never re-entrantly inside
    the publisher's own call."""
    n = 500
    batches: list[list[Message]] = []
    done = trio.Event()
    in_publish = False

    def handler(msgs: list[Message]) -> None:
        assert not in_publish
        batches.append(msgs)
        if sum(len(b) for b in batches) >= n:
            done.set()

    async with env.connected("a", "b") as (a, b), b.subscribe("h/#", handler=handler):
        for i in range(n):
            in_publish = True
            a.publish_nowait(f"h/{i % 3}", b"%d" % i)
            in_publish = False
            if i % 50 == 0:
                await trio.lowlevel.checkpoint()
        with trio.fail_after(TIMEOUT):
            await done.wait()
    got = [int(m.payload) for batch in batches for m in batch]
    assert got == list(range(n))


@pytest.mark.parametrize("qos", [0, 1])
async def test_throughput(env: BusEnv, qos: int, capsys: pytest.CaptureFixture[str]) -> None:
    """20,000 messages arrive complete and in order; the rate is printed, not asserted."""
    n = 20_000
    async with env.connected("a", "b") as (a, b), b.subscribe("tp/#", buffer=n) as sub:
        received = 0
        start = time.perf_counter()

        async def consume() -> None:
            nonlocal received
            while received < n:
                msg = await sub.receive()
                assert int(msg.payload) == received
                received += 1
                for msg in buffered(sub):
                    assert int(msg.payload) == received
                    received += 1

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                for i in range(n):
                    await a.publish("tp/x", b"%d" % i, qos=qos)
        elapsed = time.perf_counter() - start
        assert received == n
        assert sub.dropped == 0
        with capsys.disabled():
            print(
                f"\n[throughput] {env.kind} QoS {qos}: {n / elapsed:,.0f} msg/s ({n} in {elapsed:.2f} s)"
            )


async def test_subscription_overflow_is_counted_and_flagged(env: BusEnv) -> None:
    async with env.connected("a", "b") as (a, b):
        async with b.subscribe("ov/#", buffer=2) as sub, b.subscribe("end") as end:
            for i in range(5):
                await a.publish(f"ov/{i}", b"%d" % i)
            await a.publish("end", b"")
            await recv(end)
            assert sub.dropped == 3
            assert b.stats.dropped_full == 3
            assert await recv(sub) == Message("ov/0", b"0")
            assert await recv(sub) == Message("ov/1", b"1")
            await a.publish("ov/5", b"5")
            # the gap is announced on the next message
            assert await recv(sub) == Message("ov/5", b"5", lost=3)


async def test_iteration_ends_when_bus_closes(env: BusEnv) -> None:
    got: list[Message] = []
    async with env.connected("a") as (a,):
        sub = a.subscribe("it/#")
        await sub.__aenter__()
        await a.publish("it/1", b"1")
        with trio.fail_after(TIMEOUT):
            got.append(await sub.receive())
    # bus closed: buffered messages drain, then iteration stops
    async for msg in sub:
        got.append(msg)
    await sub.__aexit__(None, None, None)
    assert [m.payload for m in got] == [b"1"]
    with pytest.raises(BusClosedError):
        a.publish_nowait("it/2", b"")
    with pytest.raises(BusClosedError):
        a.subscribe("it/#")


async def test_outage_keeps_retrying_without_blocking(outage_env: BusEnv) -> None:
    env = outage_env
    async with env.connected("a", "b", max_pending=5) as (a, b), a.subscribe("o/#") as mine:
        await a.set_presence(b"a here")
        await a.drain()
        await env.broker_down()
        with trio.fail_after(TIMEOUT):
            await a.wait_disconnected()
            await b.wait_disconnected()
        assert not a.connected
        # nothing blocks while the broker is away
        with trio.fail_after(1):
            await a.publish("o/1", b"queued")  # QoS 1: queued
            await a.publish("o/2", b"gone", qos=0)  # QoS 0: discarded, counted
            late = a.subscribe("late/#")
            await late.__aenter__()  # made on reconnect
        assert a.stats.dropped_offline == 1
        assert a.pending == 1
        # the outgoing buffer is bounded, and the decision is explicit
        for i in range(4):
            a.publish_nowait("o/fill", b"%d" % i)
        with pytest.raises(BusOverflowError):
            a.publish_nowait("o/full", b"")
        blocked_done = trio.Event()

        async def blocked_publisher() -> None:
            await a.publish("o/waited", b"w")
            blocked_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_publisher)
            await trio.testing.wait_all_tasks_blocked()
            assert not blocked_done.is_set()

            await env.broker_up()
            with trio.fail_after(TIMEOUT):
                await a.wait_connected()
                await b.wait_connected()
                await blocked_done.wait()
        # our queued messages arrive in order, after resubscription
        assert await recv(mine) == Message("o/1", b"queued")
        for i in range(4):
            assert await recv(mine) == Message("o/fill", b"%d" % i)
        assert await recv(mine) == Message("o/waited", b"w")
        # the subscription made while offline works
        await b.publish("late/x", b"1")
        assert await recv(late) == Message("late/x", b"1")
        await late.__aexit__(None, None, None)
        # presence was republished although the broker forgot all retained messages
        async with env.connected("c") as (c,), c.subscribe("presence/a") as pres:
            assert await recv(pres) == Message("presence/a", b"a here", retained=True)
        assert a.stats.connects == 2 and a.stats.disconnects == 1


# ------------------------------------------------------------------- memory only


async def _run_lossy(seed: int) -> list[int]:
    async with MemoryNetwork(seed=seed, drop=0.3) as net:
        async with net.open_bus("r", "a") as a, net.open_bus("r", "b") as b:
            async with b.subscribe("d/#", buffer=1000) as sub:
                for i in range(200):
                    await a.publish("d/x", b"%d" % i)
                got = [int(m.payload) for m in buffered(sub)]
                assert net.dropped == 200 - len(got)
                return got


async def test_memory_drop_is_deterministic() -> None:
    first = await _run_lossy(1)
    assert 100 < len(first) < 180
    assert first == sorted(first)
    assert await _run_lossy(1) == first
    assert await _run_lossy(2) != first


async def test_memory_partition_and_heal() -> None:
    async with MemoryNetwork() as net:
        async with (
            net.open_bus("r", "a", will=b"a gone") as a,
            net.open_bus("r", "b") as b,
            b.subscribe("presence/+") as pres,
            b.subscribe("u/#") as upd,
        ):
            await a.set_presence(b"a here")
            assert (await recv(pres)).payload == b"a here"
            net.partition("a")
            assert not a.connected and b.connected
            assert await recv(pres) == Message("presence/a", b"a gone")
            await a.publish("u/1", b"during split")  # queued at a
            await b.publish("u/2", b"b during split")  # a misses it (clean session)
            assert await recv(upd) == Message("u/2", b"b during split")
            net.heal()
            assert a.connected
            assert await recv(pres) == Message("presence/a", b"a here")
            assert await recv(upd) == Message("u/1", b"during split")


async def test_bus_type_is_a_bus() -> None:
    async with MemoryNetwork() as net, net.open_bus("r", "n") as bus:
        assert isinstance(bus, Bus)
        assert bus.presence_topic == "presence/n"
        assert bus.full_topic("x/y") == "r/x/y"


async def test_resubscribing_gives_up_when_the_link_breaks_meanwhile() -> None:
    """Regression: when the transport could not (re)make a subscription because the
    link broke, resubscribing looped without yielding (the MQTT bus hung the whole
    event loop at 100 % CPU); the next connection redoes it instead."""
    async with MemoryNetwork() as net, net.open_bus("r", "n1") as bus:
        async with bus.subscribe("a/#"):
            net.partition("n1")
            with trio.fail_after(1):
                await bus.resubscribe_all()  # as after a reconnect
            net.heal()
