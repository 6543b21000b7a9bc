"""MQTT-specific bus behaviour: broker restarts, backoff, wills from dead sockets,
configuration. The shared behaviour is in test_transport.py."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

from distkv.bus import Message, open_bus
from distkv.bus.memory import MemoryNetwork
from distkv.bus.mqtt import MqttBus, parse_mqtt_uri
from distkv.exceptions import ConfigError
from distkv.testing.faultymqtt import open_faulty_mqtt_bus
from distkv.testing.mosquitto import Mosquitto

# Safety net only; tests synchronise on events and messages.
TIMEOUT = 10


def fast(broker: Mosquitto, node: str, **kw):
    kw.setdefault("min_backoff", 0.02)
    kw.setdefault("max_backoff", 0.2)
    return open_faulty_mqtt_bus(broker.uri, "m", node, **kw)


async def recv(sub) -> Message:
    with trio.fail_after(TIMEOUT):
        return await sub.receive()


# ------------------------------------------------------------------ configuration


def test_parse_uri() -> None:
    assert parse_mqtt_uri("mqtt://broker") == ("broker", 1883, None, None)
    assert parse_mqtt_uri("mqtt://u:p%40ss@127.0.0.1:1884") == ("127.0.0.1", 1884, "u", "p@ss")
    assert parse_mqtt_uri("mqtts://broker") == ("broker", 8883, None, None)  # TLS


@pytest.mark.parametrize(
    "bad", ["http://x", "mqtt://", "mqtt://h:notaport", "mqtt://h/path", "mqtts://h/x"]
)
def test_parse_uri_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_mqtt_uri(bad)


async def test_open_bus_dispatches(private_broker: Mosquitto) -> None:
    async with open_bus({"uri": private_broker.uri, "min_backoff": 0.02}, "m", "n") as bus:
        assert isinstance(bus, MqttBus)
        with trio.fail_after(TIMEOUT):
            await bus.wait_connected()
    async with MemoryNetwork() as net, open_bus(net, "m", "n") as bus:
        assert bus.connected
    with pytest.raises(ConfigError):
        open_bus("redis://x", "m", "n")
    with pytest.raises(ConfigError):
        open_bus({"keepalive": 3}, "m", "n")


async def test_exceptions_pass_through_unwrapped(private_broker: Mosquitto) -> None:
    with pytest.raises(KeyError):
        async with fast(private_broker, "n"):
            raise KeyError("mine")


# ------------------------------------------------------------ connection handling


class _AttemptLog(logging.Handler):
    """Counts failed connection attempts as the bus logs them; wakes a waiting test
    (log records are emitted on the trio thread, so setting a trio.Event is fine)."""

    def __init__(self, wanted: int) -> None:
        super().__init__(logging.DEBUG)
        self.wanted = wanted
        self.records: list[logging.LogRecord] = []
        self.reached = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "unreachable" in record.getMessage():
            self.records.append(record)
            if len(self.records) >= self.wanted:
                self.reached.set()


@pytest.fixture
def attempt_log():
    logger = logging.getLogger("distkv.bus.mqtt")
    handler = _AttemptLog(3)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


async def test_starts_without_broker_and_connects_later(
    private_broker: Mosquitto, attempt_log: _AttemptLog
) -> None:
    await private_broker.astop()
    with trio.fail_after(1):
        # opening and subscribing do not wait for the broker
        async with fast(private_broker, "a") as a, a.subscribe("s/#") as sub:
            assert not a.connected
            with trio.fail_after(TIMEOUT):
                await attempt_log.reached.wait()
            assert a.stats.connect_failures >= 3
            await private_broker.astart()
            with trio.fail_after(TIMEOUT):
                await a.wait_connected()
            await a.publish("s/x", b"1")
            assert await recv(sub) == Message("s/x", b"1")
    # only the first failure of a series is a warning; the rest are debug
    levels = [r.levelno for r in attempt_log.records]
    assert levels[0] == logging.WARNING
    assert set(levels[1:]) == {logging.DEBUG}


async def test_broker_restart_reconnects_and_resubscribes(
    private_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="distkv.bus.mqtt")
    async with fast(private_broker, "a") as a, fast(private_broker, "b") as b:
        with trio.fail_after(TIMEOUT):
            await a.wait_connected()
            await b.wait_connected()
        async with a.subscribe("r/#") as sub:
            for round_ in range(2):
                await private_broker.astop()
                with trio.fail_after(TIMEOUT):
                    await a.wait_disconnected()
                    await b.wait_disconnected()
                await private_broker.astart()  # same port
                with trio.fail_after(TIMEOUT):
                    await a.wait_connected()
                    await b.wait_connected()
                await b.publish("r/x", b"%d" % round_)
                assert await recv(sub) == Message("r/x", b"%d" % round_)
        assert a.stats.connects == 3
        assert a.stats.disconnects == 2
    # at the default log level the journal says the broker is back, not only that
    # it was lost (a journal ending on "unreachable; retrying" misleads an operator)
    said = [r.getMessage() for r in caplog.records if "bus a:" in r.getMessage()]
    assert [("lost" in m, "is back" in m) for m in said if "lost" in m or "is back" in m] == [
        (True, False),
        (False, True),
    ] * 2, said


async def test_inflight_qos1_survive_a_broken_socket(private_broker: Mosquitto) -> None:
    """QoS 1 messages handed to paho but not yet acknowledged are re-sent after the
    reconnect (possibly twice), in order."""
    n = 500
    async with fast(private_broker, "a") as a, fast(private_broker, "b") as b:
        with trio.fail_after(TIMEOUT):
            await a.wait_connected()
            await b.wait_connected()
        async with b.subscribe("q/#", buffer=4 * n) as sub:
            for i in range(n):
                a.publish_nowait("q/x", b"%d" % i)
            a.drop_connection()  # most of them are still in flight now
            with trio.fail_after(TIMEOUT):
                await a.drain()
            got: list[int] = []
            while len(set(got)) < n:
                got.append(int((await recv(sub)).payload))
            assert sorted(set(got)) == list(range(n))
            firsts = list(dict.fromkeys(got))
            # first occurrences are in order: nothing overtakes, duplicates only repeat
            assert firsts == list(range(n))


async def test_will_from_a_killed_socket(private_broker: Mosquitto) -> None:
    """A process that dies has its socket closed by the kernel: simulated by shutting
    the socket down under paho's feet and never coming back."""
    async with fast(private_broker, "w") as w, w.subscribe("presence/a") as pres:
        async with fast(private_broker, "a", will=b"dead") as a:
            await a.set_presence(b"alive")
            assert (await recv(pres)).payload == b"alive"
            await a.crash()
        assert await recv(pres) == Message("presence/a", b"dead")


async def test_close_while_broker_down_is_prompt(private_broker: Mosquitto) -> None:
    with trio.fail_after(TIMEOUT):
        async with fast(private_broker, "a", will=b"x") as a:
            await a.wait_connected()
            await private_broker.astop()
            await a.wait_disconnected()
            a.publish_nowait("lost", b"1")  # queued, discarded (and logged) on close
            closing = trio.current_time()
        elapsed = trio.current_time() - closing
    assert a.closed
    assert elapsed < 1.0  # no waiting for the broker or the backoff timer


async def test_mqtt_v311_basics(private_broker: Mosquitto) -> None:
    """The v3.1.1 option: same behaviour for non-overlapping subscriptions."""
    async with (
        fast(private_broker, "w", mqtt_version=4) as w,
        w.subscribe("presence/+") as pres,
        w.subscribe("u/+/x") as upd,
    ):
        async with fast(private_broker, "a", will=b"off", mqtt_version=4) as a:
            with trio.fail_after(TIMEOUT):
                await a.wait_connected()
                await w.wait_connected()
            await a.set_presence(b"on")
            assert await recv(pres) == Message("presence/a", b"on")
            await a.publish("u/1/y", b"no")
            await a.publish("u/1/x", b"yes")
            assert await recv(upd) == Message("u/1/x", b"yes")
            a.drop_connection()
            assert (await recv(pres)).payload == b"off"
            assert (await recv(pres)).payload == b"on"
            await a.crash()
        assert (await recv(pres)).payload == b"off"
        async with (
            fast(private_broker, "late", mqtt_version=4) as late,
            late.subscribe("presence/a") as s,
        ):
            assert await recv(s) == Message("presence/a", b"off", retained=True)
    with pytest.raises(ConfigError):
        MqttBus(private_broker.uri, "m", "n", mqtt_version=3)


@pytest.mark.parametrize("version", [5, 4])
async def test_socket_has_tcp_nodelay(private_broker: Mosquitto, version: int) -> None:
    """Nagle's algorithm held paced updates back for the broker's delayed ACK (~40 ms
    clumps across nodes): every bus socket, also after a reconnect, has TCP_NODELAY."""

    def nodelay(bus: MqttBus) -> int:
        sock = bus.connection_socket
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    async with fast(private_broker, "a", mqtt_version=version) as a:
        with trio.fail_after(TIMEOUT):
            await a.wait_connected()
            assert nodelay(a)
            first = a.connection_socket
            a.drop_connection()
            await a.wait_disconnected()
            await a.wait_connected()
        assert a.connection_socket is not first
        assert nodelay(a)
