"""Fixtures for the bus tests: the same tests run on the memory bus and on MQTT.

``env`` gives a test one network (a fresh root, so retained messages of other tests on
the shared broker cannot leak in) with ``open_bus(node, **kw)`` and ``connected(...)``.
The MQTT variants (v5 and v3.1.1) use one private mosquitto per session, started on first use.
``outage_env`` additionally can take the broker down and up again: MQTT tests then get a
private broker of their own so that the shared one is never disturbed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from distkv.bus import Bus
from distkv.bus.memory import MemoryNetwork
from distkv.testing.faultymqtt import open_faulty_mqtt_bus
from distkv.testing.mosquitto import Mosquitto, find_mosquitto

# Safety net for anything that waits for the network; tests synchronise on events.
TIMEOUT = 10


class _LazyBroker:
    """Starts the session broker only when an MQTT test first needs it."""

    def __init__(self) -> None:
        self.broker: Mosquitto | None = None

    def get(self) -> Mosquitto:
        if find_mosquitto() is None:
            pytest.skip("mosquitto is not installed")
        if self.broker is None:
            # Generous queue: the throughput test must not lose messages in the broker.
            self.broker = Mosquitto(max_queued_messages=100_000)
            self.broker.start()
        return self.broker

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()


@pytest.fixture(scope="session")
def session_broker() -> Iterator[_LazyBroker]:
    holder = _LazyBroker()
    yield holder
    holder.close()


class BusEnv:
    """One network of buses under a fresh root."""

    kind: str

    def __init__(self) -> None:
        self.root = "t" + uuid.uuid4().hex[:10]

    def open_bus(
        self, node: str, *, root: str | None = None, **kw: Any
    ) -> AbstractAsyncContextManager[Bus]:
        """A bus for ``node`` under this env's root (or another ``root`` on the same
        broker)."""
        raise NotImplementedError

    async def broker_down(self) -> None:
        raise NotImplementedError

    async def broker_up(self) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def connected(self, *nodes: str, **kw: Any) -> AsyncIterator[list[Bus]]:
        """Open one bus per node and wait until all are connected."""
        async with AsyncExitStack() as stack:
            buses = [await stack.enter_async_context(self.open_bus(n, **kw)) for n in nodes]
            with trio.fail_after(TIMEOUT):
                for bus in buses:
                    await bus.wait_connected()
            yield buses


class MemoryEnv(BusEnv):
    kind = "memory"

    def __init__(self, net: MemoryNetwork) -> None:
        super().__init__()
        self.net = net

    def open_bus(
        self, node: str, *, root: str | None = None, **kw: Any
    ) -> AbstractAsyncContextManager[Bus]:
        return self.net.open_bus(root or self.root, node, **kw)

    async def broker_down(self) -> None:
        self.net.stop_broker()
        await trio.lowlevel.checkpoint()

    async def broker_up(self) -> None:
        self.net.start_broker()
        await trio.lowlevel.checkpoint()


class MqttEnv(BusEnv):
    kind = "mqtt"

    def __init__(self, broker: Mosquitto, version: int = 5) -> None:
        super().__init__()
        self.broker = broker
        self.version = version
        if version == 4:
            self.kind = "mqtt4"

    def open_bus(
        self, node: str, *, root: str | None = None, **kw: Any
    ) -> AbstractAsyncContextManager[Bus]:
        # Short backoff: reconnect tests should not wait seconds for the next attempt.
        kw.setdefault("min_backoff", 0.02)
        kw.setdefault("max_backoff", 0.2)
        kw.setdefault("mqtt_version", self.version)
        return open_faulty_mqtt_bus(self.broker.uri, root or self.root, node, **kw)

    async def broker_down(self) -> None:
        await self.broker.astop()

    async def broker_up(self) -> None:
        await self.broker.astart()


@pytest.fixture(params=["memory", "mqtt", "mqtt4"])
async def env(request: pytest.FixtureRequest, session_broker: _LazyBroker) -> AsyncIterator[BusEnv]:
    """The memory bus, MQTT v5 and MQTT v3.1.1 (the server's default, which paho's
    packets take a leaner path for: see distkv/bus/mqtt.py)."""
    if request.param == "memory":
        async with MemoryNetwork() as net:
            yield MemoryEnv(net)
    else:
        yield MqttEnv(session_broker.get(), 4 if request.param == "mqtt4" else 5)


@pytest.fixture(params=["memory", "mqtt"])
async def outage_env(request: pytest.FixtureRequest) -> AsyncIterator[BusEnv]:
    if request.param == "memory":
        async with MemoryNetwork() as net:
            yield MemoryEnv(net)
    else:
        if find_mosquitto() is None:
            pytest.skip("mosquitto is not installed")
        broker = Mosquitto()
        try:
            await broker.astart()
            yield MqttEnv(broker)
        finally:
            await trio.to_thread.run_sync(broker.close)


@pytest.fixture
async def private_broker() -> AsyncIterator[Mosquitto]:
    """A broker of the test's own (it may stop and restart it)."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto()
    try:
        await broker.astart()
        yield broker
    finally:
        await trio.to_thread.run_sync(broker.close)
