"""Fixtures for multi-node tests: a private mosquitto and `distkv server` processes."""

import pytest
import trio

from distkv.testing.mosquitto import Mosquitto
from distkv.testing.process import ServerProcess


@pytest.fixture
def broker():
    b = Mosquitto()
    b.start()
    yield b
    b.close()


@pytest.fixture
def lossy_broker():
    """A broker that drops QoS 1 messages to a subscriber more than 2 messages behind."""
    b = Mosquitto(max_queued_messages=2)
    b.start()
    yield b
    b.close()


class Nodes:
    """`distkv server` processes on one broker; every one is stopped (by PID) at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs: dict[str, ServerProcess] = {}

    def make(self, name: str, broker, **server) -> ServerProcess:
        cfg = {
            "server": {
                # reconnect quickly after a broker outage (tests stop/start it)
                "mqtt": {"uri": broker.uri, "max_backoff": 0.5},
                "ready_timeout": 10,
                **server,
            },
            "logging": {"level": "INFO"},
        }
        p = ServerProcess(self.tmp, name, cfg=cfg)
        self.procs[name] = p
        return p

    async def start(self, name: str, *args: str) -> ServerProcess:
        p = self.procs[name]
        line = await trio.to_thread.run_sync(lambda: p.start(*args))
        assert line == "Running.", line
        return p

    async def run(self, name: str, cmd: str, input: str | None = None):
        p = self.procs[name]
        return await trio.to_thread.run_sync(lambda: p.run(cmd, input=input))

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.stop(kill=True)


@pytest.fixture
def nodes(tmp_path):
    n = Nodes(tmp_path)
    yield n
    n.stop_all()
