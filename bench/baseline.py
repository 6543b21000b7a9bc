"""Baseline: bare trio + msgpack request/response against bench/echo_server.py.

The client mirrors the DistKV client's design (one connection, a reader task that
hands each reply to the waiting task by ``seq`` via ``reschedule``, writes from many
tasks coalesced into one ``send_all``), minus everything DistKV-specific. So this is
the floor the design can reach on the machine of the day.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import outcome
import trio

from . import Result, benchmark
from .measure import rounds, run_concurrent, run_seq
from .procs import HOST


class _Waiter:
    __slots__ = ("task", "reply", "parked")

    def __init__(self, task):
        self.task = task
        self.reply = None
        self.parked = False


class EchoClient:
    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.seq = 0
        self.waiting: dict[int, _Waiter] = {}
        self.outbuf: list[bytes] = []
        self.sending = False
        self.pack = msgpack.Packer(use_bin_type=True).pack

    async def reader(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        reschedule = trio.lowlevel.reschedule
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            unpacker.feed(data)
            for msg in unpacker:
                w = self.waiting.pop(msg["seq"], None)
                if w is None:
                    continue
                # The reply can beat the sender back: while it is still inside
                # send_all (which checkpoints) it must not be rescheduled.
                if w.parked:
                    reschedule(w.task, outcome.Value(msg))
                else:
                    w.reply = msg

    async def request(self, **msg) -> dict:
        self.seq += 1
        seq = msg["seq"] = self.seq
        w = self.waiting[seq] = _Waiter(trio.lowlevel.current_task())
        self.outbuf.append(self.pack(msg))
        if not self.sending:
            self.sending = True
            try:
                while self.outbuf:
                    buf = b"".join(self.outbuf) if len(self.outbuf) > 1 else self.outbuf[0]
                    self.outbuf.clear()
                    await self.stream.send_all(buf)
            except BaseException:
                self.waiting.pop(seq, None)
                raise
            finally:
                self.sending = False
        if w.reply is not None:
            return w.reply
        w.parked = True

        def abort(_):
            self.waiting.pop(seq, None)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


@asynccontextmanager
async def echo_client(ctx) -> AsyncIterator[EchoClient]:
    """A bare echo server (stopped afterwards) and a client reading its replies."""
    p = await ctx.pool.start_echo()
    try:
        stream = await trio.open_tcp_stream(HOST, p.port)
        async with stream, trio.open_nursery() as nursery:
            c = EchoClient(stream)
            nursery.start_soon(c.reader)
            yield c
            nursery.cancel_scope.cancel()
    finally:
        await ctx.stop(p)


@benchmark(
    "echo",
    group="baseline",
    rows=[
        ("baseline trio+msgpack round-trip, sequential", "req/s", None),
        ("baseline trio+msgpack round-trip, 64 tasks", "req/s", None),
    ],
)
async def bench_echo(ctx) -> list[Result]:
    """Bare trio+msgpack round-trip (the floor), sequential and 64 tasks."""
    async with echo_client(ctx) as c:
        path = ["b", "echo", "k1"]

        async def op(i):
            await c.request(action="set_value", path=path, value=i)

        max_s = ctx.scale(1.0, 0.3)
        n_rounds = ctx.scale(3, 1)
        await run_seq(op, 2000, 0.2)  # warm-up
        seq, seq_note = await rounds(lambda r: run_seq(op, 200_000, max_s), n_rounds)
        await run_concurrent(op, 64, 5000, 0.2)
        conc, conc_note = await rounds(lambda r: run_concurrent(op, 64, 500_000, max_s), n_rounds)
    return [
        Result("baseline trio+msgpack round-trip, sequential", seq, "req/s", note=seq_note),
        Result("baseline trio+msgpack round-trip, 64 tasks", conc, "req/s", note=conc_note),
    ]


PACE_S = 0.010  # as bench/paced.py: one message every 10 ms


@benchmark(
    "echo_paced",
    group="baseline",
    rows=[
        ("baseline trio+msgpack round-trip p50, one every 10 ms", "ms", None),
        ("baseline trio+msgpack round-trip p99, one every 10 ms", "ms", None),
        ("baseline paho->mosquitto->paho hop p50, one every 10 ms", "ms", None),
        ("baseline paho->mosquitto->paho hop p99, one every 10 ms", "ms", None),
    ],
    timeout=40,
)
async def bench_echo_paced(ctx) -> list[Result]:
    """The floor of paced latency on this machine: a bare two-process trio+msgpack
    request/reply, and a bare paho publish -> mosquitto -> paho subscriber hop (two
    processes), one message every 10 ms. A cross-node watch event takes a client ->
    node hop, the bus hop and a node -> client hop: compare its p50 with these."""
    import json
    import subprocess
    import sys
    import time

    from .cluster import _broker
    from .measure import percentile
    from .procs import REPO

    n, warm = ctx.scale(1000, 200), ctx.scale(50, 10)
    async with echo_client(ctx) as c:
        path = ["b", "echo", "k1"]
        rtt = []
        nxt = time.perf_counter()
        for i in range(warm + n):
            nxt += PACE_S
            await trio.sleep(max(0.0, nxt - time.perf_counter()))
            t0 = time.perf_counter()
            await c.request(action="set_value", path=path, value=i)
            if i >= warm:
                rtt.append((time.perf_counter() - t0) * 1000)
    rtt.sort()

    async with _broker() as broker:
        topic = "hop/x"
        argv = [sys.executable, "-m", "bench.mqtt_hop"]
        args = [broker.host, str(broker.port), topic]
        sub = await trio.lowlevel.open_process(
            [*argv, "sub", *args, str(warm + n)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=str(REPO),
        )
        try:
            buf = b""
            with trio.fail_after(10):
                while b"ready" not in buf:
                    data = await sub.stdout.receive_some(65536)
                    if not data:
                        raise RuntimeError("mqtt_hop subscriber exited early")
                    buf += data
            pub = await trio.run_process(
                [*argv, "pub", *args, str(warm + n), str(PACE_S)],
                cwd=str(REPO),
                stdin=subprocess.DEVNULL,
            )
            assert pub.returncode == 0
            with trio.fail_after(10):
                while not buf.rstrip().endswith(b"]"):
                    data = await sub.stdout.receive_some(65536)
                    if not data:
                        break
                    buf += data
            hop = sorted(json.loads(buf.split(b"ready", 1)[1])[warm:])
        finally:
            if sub.poll() is None:
                sub.kill()
            await sub.wait()
    note = f"{len(rtt)} requests, min {rtt[0]:.3f} ms, max {rtt[-1]:.3f} ms"
    hnote = f"{len(hop)} messages (QoS 1 published, QoS 0 subscribed), min {hop[0]:.3f} ms, max {hop[-1]:.3f} ms"
    return [
        Result("baseline trio+msgpack round-trip p50, one every 10 ms", percentile(rtt, 50), "ms", note=note),
        Result("baseline trio+msgpack round-trip p99, one every 10 ms", percentile(rtt, 99), "ms"),
        Result("baseline paho->mosquitto->paho hop p50, one every 10 ms", percentile(hop, 50), "ms", note=hnote),
        Result("baseline paho->mosquitto->paho hop p99, one every 10 ms", percentile(hop, 99), "ms"),
    ]  # fmt: skip
