"""Issue #15, item 13: a broker outage under write load, and a kill -9 restart, with
real `distkv server` processes on a private mosquitto (stopped and started by PID).

The probe measured ~18 minutes to converge after a 20 s outage at ~13k writes/s, client
round trips up to 8.6 s meanwhile, and a node restarted after kill -9 that served stale
data for ~20 s. The full-size measurement is the bench row ``repl_outage``; these are
the cheap versions: a short outage at the highest rate this machine gives, asserting
that convergence is bounded by repair throughput and that clients keep getting quick
answers, and reads right after a kill -9 restart.
"""

from __future__ import annotations

import time

import pytest
import trio

from distkv.client import open_client
from distkv.testing.mosquitto import Mosquitto, find_mosquitto
from distkv.testing.process import ServerProcess
from distkv.util import P

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed"),
]


@pytest.fixture
def broker():
    b = Mosquitto(max_queued_messages=100_000)
    b.start()
    yield b
    b.close()


@pytest.fixture
def procs():
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.stop(kill=True)


def node(tmp_path, procs, name: str, broker, *, state: bool = False, **more) -> ServerProcess:
    server = {"mqtt": {"uri": broker.uri, "max_backoff": 0.5}, "ready_timeout": 20, **more}
    if state:
        (tmp_path / f"{name}.state").mkdir(exist_ok=True)
        server["state_dir"] = str(tmp_path / f"{name}.state")
    p = ServerProcess(tmp_path, name, cfg={"server": server, "logging": {"level": "INFO"}})
    procs.append(p)
    return p


async def start(p: ServerProcess, *args: str) -> None:
    line = await trio.to_thread.run_sync(lambda: p.start(*args))
    assert line == "Running.", line


def client_of(p: ServerProcess):
    return open_client(connect={"host": "127.0.0.1", "port": p.port, "auth": None})


async def missing_on(p: ServerProcess, origin: str) -> tuple[int, int]:
    """(ticks of ``origin`` that ``p`` lacks, the highest tick of it ``p`` knows)."""
    async with client_of(p) as c:
        t = (await c.get_state()).replication["ticks"].get(origin) or {}
    return sum(b - a for a, b in t.get("missing", ())), t.get("known", 0)


async def test_outage_under_write_load_converges_quickly_and_clients_get_answers(
    tmp_path, broker, procs
):
    one = node(tmp_path, procs, "one", broker)
    two = node(tmp_path, procs, "two", broker)
    await start(one, "-i", "Testing")
    await start(two)
    worst = {"one": 0.0, "two": 0.0}

    async def probe(p: ServerProcess) -> None:
        async with client_of(p) as c:
            while True:
                t0 = time.perf_counter()
                await c.get(P("probe"))
                worst[p.name] = max(worst[p.name], time.perf_counter() - t0)
                await trio.sleep(0.02)

    async with trio.open_nursery() as probes:
        probes.start_soon(probe, one)
        probes.start_soon(probe, two)
        async with client_of(one) as c:
            stop = trio.Event()

            async def put(lo: int) -> None:
                i = lo
                while not stop.is_set():
                    await c.set(P(f"out.k{i}"), i)
                    i += 32

            async with trio.open_nursery() as writers:
                for lo in range(32):
                    writers.start_soon(put, lo)
                await trio.sleep(0.5)
                await broker.astop()
                await trio.sleep(4)
                stop.set()
            tick = (await c.get_state()).tick
        await broker.astart()
        t0 = time.perf_counter()
        # bounded by repair throughput: what the outage left out, at >= 5,000 ticks/s
        # (measured ~20,000/s on a loaded 2-core box), plus reconnect and detection
        bound = 5 + tick / 5000
        with trio.fail_after(bound):
            while (await missing_on(two, "one")) != (0, tick):
                await trio.sleep(0.05)
        took = time.perf_counter() - t0
        probes.cancel_scope.cancel()
    async with client_of(one) as c1, client_of(two) as c2:
        n1 = len([x async for x in c1.get_tree(P("out"))])
        n2 = len([x async for x in c2.get_tree(P("out"))])
    assert n1 == n2 == tick - 1, (n1, n2, tick)  # tick 1 is the -i root value
    assert tick > 5000, f"only {tick} writes: the outage left little to repair"
    # the probe: 8.6 s round trips while the nodes repaired
    print(f"outage: {tick} ticks, converged in {took:.2f} s, worst round trips {worst}")
    assert max(worst.values()) < 1.0, (worst, took)


# catchup_timeout bounds the time without progress: a catch-up that takes longer
# than it but progresses still ends before the node serves (0.2 s: before, the node
# served what it had after 0.2 s, with catchup_incomplete, and "marker" was "old")
@pytest.mark.parametrize("catchup", [3, 0.2])
async def test_restart_after_kill_9_serves_no_stale_data(tmp_path, broker, procs, catchup):
    one = node(tmp_path, procs, "one", broker, state=True)
    two = node(tmp_path, procs, "two", broker, state=True, catchup_timeout=catchup)
    await start(one, "-i", "Testing")
    await start(two)
    async with client_of(one) as c:
        await c.set(P("marker"), "old")
        for i in range(200):
            await c.set(P(f"before.k{i}"), i)
    with trio.fail_after(10):
        while (await missing_on(two, "one"))[1] < 202:
            await trio.sleep(0.05)
    two.stop(kill=True)
    async with client_of(one) as c:
        async with trio.open_nursery() as nursery:
            for lo in range(16):

                async def put(lo=lo):
                    for i in range(lo, 5000, 16):
                        await c.set(P(f"while.k{i}"), i)

                nursery.start_soon(put)
        await c.set(P("marker"), "new")
        tick = (await c.get_state()).tick
    await start(two)  # with its state dir: "Running." only once it has caught up
    async with client_of(two) as c:
        marker = (await c.get(P("marker"))).value
        st = (await c.get_state()).replication
        assert marker == "new", st["ticks"]
        assert st["catchup_incomplete"] is False
        assert len([x async for x in c.get_tree(P("while"))]) == 5000
    assert await missing_on(two, "one") == (0, tick)


async def test_restart_without_broker_serves_what_it_has_after_catchup_timeout(
    tmp_path, broker, procs
):
    # no progress possible (no broker): a lone home-automation node must come up
    one = node(tmp_path, procs, "one", broker, state=True)
    two = node(tmp_path, procs, "two", broker, state=True, catchup_timeout=0.5)
    await start(one, "-i", "Testing")
    await start(two)
    async with client_of(one) as c:
        await c.set(P("marker"), "old")
    with trio.fail_after(10):
        while (await missing_on(two, "one"))[1] < 2:
            await trio.sleep(0.05)
    two.stop(kill=True)
    await broker.astop()
    t0 = time.perf_counter()
    await start(two)
    took = time.perf_counter() - t0
    async with client_of(two) as c:
        assert (await c.get(P("marker"))).value == "old"
        assert (await c.get_state()).replication["catchup_incomplete"] is True
    assert took < 10, took
