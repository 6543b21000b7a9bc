"""Garbage, oversized and malformed input: the sender gets an error, everyone else is served."""

import msgpack
import trio
import trio.testing

from distkv.exceptions import StreamOverflowError
from distkv.testing.server import (
    make_config,
    open_memory_client,
    open_test_server,
    raw_connection,
)
from distkv.util import P
from distkv.wire import codec


async def test_garbage_bytes_disconnect_only_that_client(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as good:
        a, recv = await raw_connection(s)
        await a.send_all(b"\xc1\xc1\xc1 definitely not msgpack")
        err = await recv()
        assert err["error"] == "protocol"
        assert await recv() is None  # disconnected
        await good.set(P("still"), "serving")
        assert (await good.get(P("still"))).value == "serving"


async def test_non_map_message_is_an_error_not_a_disconnect(autojump_clock):
    async with open_test_server() as s:
        a, recv = await raw_connection(s)
        await a.send_all(msgpack.packb([1, 2, 3]))
        assert (await recv())["error"] == "protocol"
        await a.send_all(codec.packb({"seq": 5, "action": "ping"}))
        rep = await recv()
        assert rep["seq"] == 5 and rep["node"] == "test"


async def test_oversized_message_disconnects(autojump_clock):
    cfg = make_config(server={"max_message": 10_000})
    async with open_test_server(cfg=cfg) as s, open_memory_client(s) as good:
        a, recv = await raw_connection(s)
        big = codec.packb({"seq": 1, "action": "set_value", "path": P("x"), "value": "x" * 50_000})
        await a.send_all(big)
        err = await recv()
        assert err["error"] == "protocol"
        assert await recv() is None
        assert "value" not in await good.get(P("x"))


async def test_missing_fields_and_wrong_types(autojump_clock):
    async with open_test_server() as s:
        a, recv = await raw_connection(s)
        for req, code in [
            ({"seq": 1}, "client"),  # no action
            ({"seq": 2, "action": "get_value", "path": "a.b"}, "client"),  # string, not a path
            ({"seq": 3, "action": "watch", "path": P("a"), "max_depth": "x"}, "client"),
            ({"seq": 4, "action": "stop", "task": "nope"}, "client"),
        ]:
            await a.send_all(codec.packb(req))
            rep = await recv()
            while rep.get("state") == "start":
                rep = await recv()
            assert rep["seq"] == req["seq"] and rep["error"] == code, rep


async def test_slow_watcher_overflows_alone(autojump_clock):
    """A watcher that never reads is cut off with an overflow error; others go on."""
    cfg = make_config(server={"window": 50_000})
    async with open_test_server(cfg=cfg) as s, open_memory_client(s) as writer:
        a, recv = await raw_connection(s, lockstep=True)
        await a.send_all(codec.packb({"seq": 1, "action": "watch", "path": P("w")}))
        # never read from `a`: the memory stream has no buffer, so everything queues
        async with open_memory_client(s) as fast, fast.watch(P("w")) as w:
            done = trio.Event()

            async def read_all():
                async for ev in w:
                    if ev.value.endswith("1999"):
                        done.set()
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                for i in range(2000):
                    await writer.set(P("w.k"), "x" * 100 + str(i))
                await done.wait()
        assert all(x.proto.out_bytes <= 60_000 for x in s.sessions)
        # now read what the slow one got: some events, then the overflow error
        got_overflow = False
        while True:
            msg = await recv()
            if msg is None or "error" in msg:
                got_overflow = msg is not None and msg["error"] == StreamOverflowError.code
                break
        assert got_overflow


async def test_values_that_cannot_be_stored(autojump_clock):
    from distkv.exceptions import ClientError

    async with open_test_server() as s, open_memory_client(s) as c:
        for bad, why in [(2**70, "out of range"), (object(), "type object")]:
            try:
                await c.set(P("x"), bad)
            except ClientError as exc:
                assert why in str(exc)
            else:
                raise AssertionError(f"{bad!r} was stored")
        await c.set(P("x"), 1)  # the connection is still fine
        assert (await c.get(P("x"))).value == 1
