"""Requests made while iterating a stream, at sizes that used to deadlock the client,
and request order while a node is not ready."""

from __future__ import annotations

import trio

from distkv.bus.memory import MemoryNetwork
from distkv.obj import ClientEntry, ClientRoot
from distkv.testing.cluster import open_test_cluster
from distkv.testing.server import (
    open_memory_client,
    open_raw_session,
    open_tcp_client,
    open_test_server,
)
from distkv.util import P

N = 10_000


async def fill(c, base: str, n: int = N) -> None:
    async with trio.open_nursery() as nursery:
        for part in range(8):

            async def writer(part=part):
                for i in range(part, n, 8):
                    await c.set(P(base) + (i,), i)

            nursery.start_soon(writer)


async def test_get_inside_get_tree_at_10k_items():
    """The shape of `async for r in c.get_tree(d): await c.get(d + r.path)`."""
    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        await fill(c, "d")
        seen = 0
        with trio.fail_after(60):
            async for r in c.get_tree(P("d")):
                res = await c.get(P("d") + r.path)
                assert res.value == r.value
                seen += 1
        assert seen == N


async def test_delete_inside_get_tree_at_10k_items():
    """The shape of `distkv client error clear`: delete each entry while listing."""
    async with open_test_server() as s, open_memory_client(s) as c:
        await fill(c, "err")
        with trio.fail_after(60):
            async for r in c.get_tree(P("err")):
                await c.delete(P("err") + r.path)
        assert [r async for r in c.get_tree(P("err"))] == []


async def test_requests_inside_a_watch_fetch_at_10k_items():
    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        await fill(c, "w")
        n = 0
        with trio.fail_after(60):
            async with c.watch(P("w"), fetch=True) as w:
                async for ev in w:
                    if ev.get("state") == "uptodate":
                        break
                    await c.set(P("copy") + ev.path, ev.value)
                    n += 1
        assert n == N
        assert (await c.get(P("copy") + (N - 1,))).value == N - 1


class Doubler(ClientEntry):
    """A mirror entry whose hook writes through the same client."""

    async def set_value(self, value):
        if value is not None and not isinstance(value, str):
            await self.root.client.set(P("doubled") + self.subpath, value * 2)


class DoublerRoot(ClientRoot):
    @classmethod
    def child_type(cls, name):
        return Doubler


async def test_mirror_whose_hook_writes_at_10k_items():
    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        await fill(c, "m")
        with trio.fail_after(60):
            async with c.mirror(P("m"), root_type=DoublerRoot):
                pass  # yields once the whole subtree is loaded, hooks included
        assert (await c.get(P("doubled") + (N - 1,))).value == 2 * (N - 1)


async def test_a_stream_nobody_reads_does_not_block_requests():
    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        await fill(c, "x", 3000)
        async with c.watch(P("x"), fetch=True):  # opened, never iterated
            with trio.fail_after(10):
                for i in range(500):
                    await c.set(P("y"), i)
                    assert (await c.get(P("y"))).value == i


async def test_pipelined_requests_keep_their_order_while_not_ready(autojump_clock):
    """Requests sent in one write while a node still waits for its peer are held,
    then handled in the order they were sent."""
    net = MemoryNetwork()
    async with open_test_cluster(0, net, cfg={"server": {"ready_timeout": 30}}) as cl:
        n2 = await cl.start("n2")  # no data: waits for a peer
        async with open_raw_session(n2) as raw:
            seqs = []
            for i in range(40):
                if i % 2:
                    seqs.append(raw.request("get_value", path=P("k")))
                else:
                    seqs.append(raw.request("set_value", path=P("k"), value=i))
            seqs.append(raw.request("ping"))  # not held back by readiness
            await raw.send()
            (first,) = await raw.replies_in_order(1)
            assert first[0] == seqs[-1], first
            await cl.start("n1", init="Testing")
            replies = await raw.replies_in_order(40)
        assert [seq for seq, _ in replies] == seqs[:-1]
        for i, (_, msg) in enumerate(replies):
            assert "error" not in msg, msg
            if i % 2:
                assert msg["value"] == i - 1  # each get saw the set sent right before it
