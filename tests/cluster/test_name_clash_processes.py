"""Two `distkv server` processes with one node name on one broker (a cloned SD card
keeps its host name, and the docs start nodes as ``distkv server $(hostname)``).

Before, both used the MQTT client id ``distkv-ROOT-NODE``: mosquitto dropped each of
them in turn every ~200 ms, for ever (46 "lost MQTT broker" lines in 10 s), neither
noticed the other, and both kept accepting writes with colliding ticks."""

from __future__ import annotations

import time

import pytest
import trio

from distkv.client import open_client
from distkv.testing.mosquitto import find_mosquitto
from distkv.testing.process import ServerProcess
from distkv.util import P

# the broker fixture is in conftest.py
pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")


async def test_a_second_node_with_a_taken_name_stops_and_the_first_carries_on(tmp_path, broker):
    procs = []

    def node(where, name: str) -> ServerProcess:
        where.mkdir(exist_ok=True)
        server = {"mqtt": {"uri": broker.uri, "max_backoff": 0.5}, "ready_timeout": 10}
        p = ServerProcess(where, name, cfg={"server": server})
        procs.append(p)
        return p

    one, two = node(tmp_path / "a", "one"), node(tmp_path / "a", "two")
    clone = node(tmp_path / "b", "two")
    try:
        assert await trio.to_thread.run_sync(lambda: one.start("-i", "Testing")) == "Running."
        assert await trio.to_thread.run_sync(two.start) == "Running."
        clone.launch()
        t0 = time.monotonic()
        rc = await trio.to_thread.run_sync(lambda: clone.proc.wait(30))
        assert rc != 0
        err = [ln for ln in clone.log.read_text().splitlines() if ln.strip()]
        said = [ln for ln in err if "another node named 'two' is already running" in ln]
        assert len(said) == 1 and "Traceback" not in clone.log.read_text(), err
        assert time.monotonic() - t0 < 15
        # the first "two" serves on, replicates, and said so once
        async with open_client(connect={"host": "127.0.0.1", "port": one.port}) as c:
            await c.set(P("after.clash"), 1)
        async with open_client(connect={"host": "127.0.0.1", "port": two.port}) as c:
            with trio.fail_after(10):
                while (await c.get(P("after.clash"))).value != 1:
                    await trio.sleep(0.05)
            assert (await c.get_state()).replication["name_clash"]
        log = two.log.read_text()
        assert log.count("another node named 'two' is on this network") == 1, log
        assert "lost MQTT broker" not in log
    finally:
        for p in procs:
            p.stop(kill=True)
