"""In-process CPU cost of replication per update, without sockets or a broker.

On a 2-core box a sequential client, the writing node, mosquitto and the receiving
node share the CPUs, so every µs the receiving node spends applying an update is
taken from the writer (issue 11: replicating / lone >= 80 %), and after a broker
outage the receiver's apply rate bounds convergence (issue 15: 595k updates in 30 s
is ~50 µs each, everything included). These rows measure that cost where it does
not depend on load: ``time.process_time()`` of this process, best of a few rounds.

The payloads are what node A sends: its replica's messages, msgpack-packed, in bus
messages of 1, 3, 12 and 500 (``BusLink``'s coalescing under load), sealed with a
network key; and ``entry`` messages as a repair answer sends them. Node B is a real
:class:`~distkv.server.Server` (no bus, no clients) whose bus link's ``handle`` gets
them: MAC check, decoding, admission, the replica's merge and bookkeeping,
``Server.replicated`` (watchers, state dir) and the end-of-batch work.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import asynccontextmanager

import trio

from . import Result, benchmark

KEY = "bench-network-key-0123456789"
NKEYS = 1000  # sequential sets in the bench cycle over 1,000 keys, so do these
BATCHES = (1, 3, 12, 500)


def _payloads(packed: list[bytes]) -> list[bytes]:
    """Bus payloads of packed messages, as ``BusLink`` makes them (``held.py``)."""
    from distkv.server.replication.buslink import MAX_PAYLOAD
    from distkv.server.replication.held import HeldMessages, bus_payload

    held = HeldMessages(1 << 40, MAX_PAYLOAD)
    for p in packed:
        held.add("t", p)
    return [bus_payload(chunk, n) for _, chunks in held.take() for chunk, n in chunks]


def _sender_messages(a, seal, paths, start: int, n: int, batch: int, now_ms: int) -> list:
    """Bus messages of node ``a``'s writes ``start .. start+n-1``, ``batch`` a message."""
    from distkv.bus.types import Message
    from distkv.wire import codec

    out = []
    for i0 in range(start, start + n, batch):
        for i in range(i0, min(start + n, i0 + batch)):
            a.local_write(paths[i % len(paths)], i, now_ms)
        packed = [codec.packb(m) for m in a.drain()]
        for pl in _payloads(packed):
            out.append(Message(f"update/{a.name}", seal.seal(pl)))
    return out


def _repair_messages(a, seal, paths, batch: int, now_ms: int) -> list:
    """Node ``a`` writes ``paths`` (new keys) and answers node b's repair request for
    them: ``entry`` messages, ``batch`` a bus message."""
    from distkv.bus.types import Message
    from distkv.core.replica import Repair
    from distkv.wire import codec

    first = a.tick + 1
    for i, p in enumerate(paths):
        a.local_write(p, i, now_ms)
    a.drain()
    for _ in a.answer_repair(Repair(a.name, "b", a.name, [[first, a.tick + 1]])):
        pass
    packed = [codec.packb(m) for m in a.drain()]
    out = []
    for i0 in range(0, len(packed), batch):
        for pl in _payloads(packed[i0 : i0 + batch]):
            out.append(Message("repair/b", seal.seal(pl)))
    return out


class _Listener:
    """A watcher's session that only counts its events (what a client does with
    them is not the receiving node's apply cost)."""

    acl = None
    conv = None

    def __init__(self):
        self.events = 0

    def send_stream(self, w, msg) -> None:
        self.events += 1


@asynccontextmanager
async def _receiver(*, state_dir: str | None = None, watch: bool = False):
    """Node b, running (no bus, no clients) until the block ends."""
    from distkv.server.server import Server
    from distkv.server.watch import Watcher
    from distkv.testing.server import make_config
    from distkv.util import P

    cfg = make_config()
    cfg["server"]["network_key"] = KEY
    if state_dir is not None:
        cfg["server"]["state_dir"] = state_dir
    b = Server("b", cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(b.serve)
        if watch:
            b.watches.add(Watcher(_Listener(), 1, P("bench"), 0, -1, 0))
        yield b
        nursery.cancel_scope.cancel()


def _feed(b, msgs: list) -> float:
    """CPU seconds for node ``b`` to take ``msgs`` one bus message (burst) at a time."""
    handle = b.replicator.link.handle
    t0 = time.process_time()
    for bm in msgs:
        handle([bm])
    return time.process_time() - t0


ROWS = [
    *((f"apply replicated updates, {n} a bus message", "µs/update", None) for n in BATCHES),
    ("apply repair entries, 500 a bus message", "µs/update", None),
    ("apply replicated updates, 12 a message, watcher + state dir", "µs/update", None),
    ("local write + after_batch, lone node (baseline)", "µs/write", None),
    ("local write + after_batch + send, replicating (memory bus)", "µs/write", None),
]


@benchmark("repl_apply", group="replication", rows=ROWS, timeout=60)
async def bench_repl_apply(ctx) -> list[Result]:
    """In-process CPU per replicated update on the receiving node (batches of 1/3/12/500
    updates, repair entries, with a watcher and a state dir) and per local write on the
    sending node; best of 3 rounds, no sockets."""
    from distkv.core.admission import BusSeal
    from distkv.core.replica import Replica
    from distkv.server.server import now_ms
    from distkv.util import P

    n = ctx.scale(12_000, 3000)
    n_rounds = 3
    seal = BusSeal(KEY)
    paths = [P(f"bench.k{i}") for i in range(NKEYS)]
    out: list[Result] = []

    def row(metric: str, secs: list[float], count: int, note: str = "") -> Result:
        best = min(secs) * 1e6 / count
        spread = f"rounds {', '.join(f'{s * 1e6 / count:.1f}' for s in secs)}"
        return Result(metric, best, ROWS_UNIT[metric], None, note=f"{spread}{note}")

    ROWS_UNIT = {m: u for m, u, _t in ROWS}
    for batch in BATCHES:
        a = Replica("a")
        async with _receiver() as b:
            secs = []
            for r in range(n_rounds):
                msgs = _sender_messages(a, seal, paths, r * n, n, batch, now_ms())
                secs.append(_feed(b, msgs))
            st = b.replicator.stats
            if st["received"] != n * n_rounds:
                raise RuntimeError(f"node b took {st['received']} of {n * n_rounds}: {st}")
        out.append(row(ROWS[BATCHES.index(batch)][0], secs, n))

    a = Replica("a")
    async with _receiver() as b:
        secs = []
        for r in range(n_rounds):
            keys = [P(f"bench.e{r}.k{i}") for i in range(n)]
            msgs = _repair_messages(a, seal, keys, 500, now_ms())
            secs.append(_feed(b, msgs))
        if b.replica.tree.lookup(keys[-1]) is None:
            raise RuntimeError("node b did not take the repair answer")
    out.append(row("apply repair entries, 500 a bus message", secs, n))

    with tempfile.TemporaryDirectory(prefix="bench-apply-") as d:
        a = Replica("a")
        async with _receiver(state_dir=os.path.join(d, "b"), watch=True) as b:
            secs = []
            for r in range(n_rounds):
                msgs = _sender_messages(a, seal, paths, r * n, n, 12, now_ms())
                secs.append(_feed(b, msgs))
        out.append(row("apply replicated updates, 12 a message, watcher + state dir", secs, n))

    out.extend(await _writer_rows(ctx, paths))
    return out


async def _writer_rows(ctx, paths: list) -> list[Result]:
    """CPU per local write on a lone node and on one with a (memory) bus: the writing
    node's replication work (update message, encoding, sealing, publishing) is the
    difference. A bus message per write, as a sequential client causes."""
    from distkv.bus.memory import MemoryNetwork
    from distkv.server.server import Server
    from distkv.testing.server import make_config

    n = ctx.scale(12_000, 3000)
    out = []
    for metric, bus in (
        ("local write + after_batch, lone node (baseline)", None),
        ("local write + after_batch + send, replicating (memory bus)", True),
    ):
        async with MemoryNetwork() as net, trio.open_nursery() as nursery:
            cfg = make_config()
            cfg["server"]["network_key"] = KEY
            s = Server("a", cfg, init="bench", bus=net if bus else None)
            await nursery.start(s.serve)
            await s.wait_ready()
            checkpoint = trio.lowlevel.checkpoint
            secs = []
            for r in range(3):
                t0 = time.process_time()
                for i in range(r * n, (r + 1) * n):
                    s.write(paths[i % len(paths)], i)
                    s.after_batch()
                    await checkpoint()  # the bus link's coalescing task sends
                secs.append(time.process_time() - t0)
            with trio.move_on_after(2):
                while bus and s.replicator.stats["sent"] < 3 * n:
                    await trio.sleep(0.01)  # the last ones wait for coalescing
            if bus and s.replicator.stats["sent"] < 3 * n:
                raise RuntimeError(f"node a sent {s.replicator.stats['sent']} of {3 * n}")
            nursery.cancel_scope.cancel()
        note = f"rounds {', '.join(f'{x * 1e6 / n:.1f}' for x in secs)}"
        out.append(Result(metric, min(secs) * 1e6 / n, "µs/write", None, note=note))
    return out


CPU_ROWS = [
    ("sequential set, CPU per write: lone node (baseline)", "µs/write", None),
    ("sequential set, CPU per write: client, lone node (baseline)", "µs/write", None),
    ("sequential set, CPU per write: writing node", "µs/write", None),
    ("sequential set, CPU per write: broker", "µs/write", None),
    ("sequential set, CPU per write: receiving node", "µs/write", None),
    ("sequential set, CPU per write: client, replicating node", "µs/write", None),
]


@benchmark("repl_cpu", group="replicating", rows=CPU_ROWS, timeout=60)
async def bench_repl_cpu(ctx) -> list[Result]:
    """CPU time per sequential set of each process (/proc utime+stime), busy polling
    off (it would count its spinning): a lone node and its client, then node one,
    mosquitto, node two and the client of a replicating pair. On a 2-core box their
    sum is what the set rate pays."""
    from distkv.client import open_client
    from distkv.util import P

    from .cluster import _broker
    from .core import _set_op
    from .footprint import cpu_seconds
    from .measure import run_seq
    from .procs import HOST

    me = os.getpid()
    n = ctx.scale(20_000, 3000)
    max_s = ctx.scale(4.0, 1.0)
    nopoll = {"server.busy_poll": 0, "server.ready_timeout": 30}

    async def measure(p, pids: list[int]) -> tuple[list[float], str]:
        async with open_client(connect={"host": HOST, "port": p.port, "busy_poll": 0}) as c:
            op = await _set_op(c, "b.cpu")
            await run_seq(op, 2000, 0.3)  # warm-up
            await trio.sleep(0.2)  # node two catches up
            before = [cpu_seconds(pid) for pid in pids]
            rate = await run_seq(op, n, max_s)
            await c.set(P("b.cpu.done"), 1)
            await trio.sleep(0.2)  # node two applies the last ones
            after = [cpu_seconds(pid) for pid in pids]
        note = f"{rate.ops:,} writes at {rate.per_s:,.0f}/s; ±{1e4 / rate.ops:.1f} µs (10 ms ticks)"
        return [(b - a) * 1e6 / rate.ops for a, b in zip(before, after, strict=True)], note

    out = []
    lone = await ctx.pool.start_node("cpulone", "-i", "Testing", conf=nopoll)
    try:
        vals, note = await measure(lone, [lone.pid, me])
    finally:
        await ctx.stop(lone)
    out += [Result(m, v, u, t, note=note) for (m, u, t), v in zip(CPU_ROWS[:2], vals, strict=True)]
    async with _broker() as broker:
        conf = {**nopoll, "server.mqtt.uri": broker.uri, "server.root": "cpu"}
        one = await ctx.pool.start_node("cpuone", "-i", "Testing", conf=conf, timeout=15)
        try:
            two = await ctx.pool.start_node("cputwo", conf=conf, timeout=15)
            try:
                async with open_client(connect={"host": HOST, "port": two.port}) as c:
                    await c.get(P(":"))  # waits until two is ready
                vals, note = await measure(one, [one.pid, broker.pid, two.pid, me])
            finally:
                await ctx.stop(two)
        finally:
            await ctx.stop(one)
    out += [Result(m, v, u, t, note=note) for (m, u, t), v in zip(CPU_ROWS[2:], vals, strict=True)]
    return out


RECV = [(1, 2000), (3, 1000), (12, 250)]  # updates per bus message, bus messages/s
RECV_ROWS = [
    (f"receiving node process, CPU per update, {b} a bus message at {r:,}/s", "µs/update", None)
    for b, r in RECV
]


@benchmark("repl_receive", group="replicating", rows=RECV_ROWS, timeout=60)
async def bench_repl_receive(ctx) -> list[Result]:
    """CPU per update of a real `distkv server` process that only receives: this
    process publishes node a's sealed updates on a private mosquitto at a fixed pace
    (no writing node, no client competing for the CPU), the node's utime+stime from
    /proc. The receiving node's whole cost: bus reading included."""
    from distkv.bus import open_bus
    from distkv.client import open_client
    from distkv.core.admission import BusSeal
    from distkv.core.replica import Replica
    from distkv.server.server import now_ms
    from distkv.util import P

    from .cluster import _broker
    from .footprint import cpu_seconds
    from .procs import HOST

    secs = ctx.scale(3.0, 1.0)
    seal = BusSeal(KEY)
    paths = [P(f"bench.k{i}") for i in range(NKEYS)]
    out = []
    async with _broker() as broker:
        conf = {"server.busy_poll": 0, "server.mqtt.uri": broker.uri, "server.root": "recv",
                "server.network_key": KEY}  # fmt: skip
        b = await ctx.pool.start_node("recvb", "-i", "Testing", conf=conf, timeout=15)
        try:
            async with (
                open_bus(broker.uri, "recv", "a") as bus,
                open_client(connect={"host": HOST, "port": b.port}) as c,
            ):
                await bus.wait_connected()
                a = Replica("a")
                for (batch, rate), (metric, unit, target) in zip(RECV, RECV_ROWS, strict=True):
                    n_msgs = int(rate * secs)
                    msgs = _sender_messages(a, seal, paths, a.tick, n_msgs * batch, batch, now_ms())
                    last = msgs[-1]
                    await trio.sleep(0.3)
                    before = cpu_seconds(b.pid)
                    t0 = trio.current_time()
                    per_tick = max(1, rate // 100)  # a bunch every 10 ms
                    for i in range(0, len(msgs), per_tick):
                        for bm in msgs[i : i + per_tick]:
                            bus.publish_nowait(bm.topic, bm.payload, qos=0)
                        await trio.sleep_until(t0 + (i + per_tick) / rate)
                    key = paths[(a.tick - 1) % NKEYS]
                    with trio.fail_after(10):
                        while (await c.get(key)).get("value") != a.tick - 1:
                            await trio.sleep(0.05)
                    cpu = cpu_seconds(b.pid) - before
                    del last
                    n = n_msgs * batch
                    out.append(Result(metric, cpu * 1e6 / n, unit, target,
                                      note=f"{n:,} updates; ±{1e4 / n:.1f} µs (10 ms ticks)"))  # fmt: skip
        finally:
            await ctx.stop(b)
    return out
