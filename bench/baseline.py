"""Baseline: bare trio + msgpack request/response against bench/echo_server.py.

The client mirrors the DistKV client's design (one connection, a reader task that
hands each reply to the waiting task by ``seq`` via ``reschedule``, writes from many
tasks coalesced into one ``send_all``), minus everything DistKV-specific. So this is
the floor the design can reach on the machine of the day.
"""

from __future__ import annotations

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
    p = await ctx.pool.start_echo()
    try:
        stream = await trio.open_tcp_stream(HOST, p.port)
        async with stream, trio.open_nursery() as nursery:
            c = EchoClient(stream)
            nursery.start_soon(c.reader)
            path = ["b", "echo", "k1"]

            async def op(i):
                await c.request(action="set_value", path=path, value=i)

            max_s = ctx.scale(1.0, 0.3)
            n_rounds = ctx.scale(3, 1)
            await run_seq(op, 2000, 0.2)  # warm-up
            seq, seq_note = await rounds(lambda r: run_seq(op, 200_000, max_s), n_rounds)
            await run_concurrent(op, 64, 5000, 0.2)
            conc, conc_note = await rounds(
                lambda r: run_concurrent(op, 64, 500_000, max_s), n_rounds
            )
            nursery.cancel_scope.cancel()
    finally:
        await ctx.stop(p)
    return [
        Result("baseline trio+msgpack round-trip, sequential", seq, "req/s", note=seq_note),
        Result("baseline trio+msgpack round-trip, 64 tasks", conc, "req/s", note=conc_note),
    ]
