"""The single-node store through the Python API (in-process server, memory streams)."""

import pytest
import trio

from distkv.exceptions import ClientChainError, ClientError, PathError, UnknownActionError
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import NotGiven, P, Path


async def test_set_get_roundtrip(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        assert (await c.get(P(":"))).value == "Testing"
        res = await c.set(P("one.two.three"), value=("Test", 42, False), chain=None)
        got = await c.get(P("one.two.three"), nchain=2)
        assert got.value == ["Test", 42, False]
        assert got.chain == res.chain
        assert "value" in got and got.get("value") == got.value


async def test_chain_checks(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("a"), 1, chain=None)
        with pytest.raises(ClientChainError):
            await c.set(P("a"), 2, chain=None)
        res = await c.get(P("a"), nchain=2)
        ret = await c.set(P("a"), res.value + 1, chain=res.chain)
        assert ret.chain != res.chain
        with pytest.raises(ClientChainError):
            await c.set(P("a"), 5, chain=res.chain)  # stale
        assert (await c.get(P("a"))).value == 2
        ret2 = await c.set(P("a"), 3, chain=ret.chain)
        assert ret2.chain != ret.chain


async def test_delete_and_missing(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("x.y"), 1)
        assert (await c.delete(P("x.y"))).changed
        assert "value" not in await c.get(P("x.y"))
        assert not (await c.delete(P("x.y"))).changed
        assert "value" not in await c.get(P("no.such.thing"))
        # a deleted entry can be created again with chain=None
        await c.set(P("x.y"), 2, chain=None)


async def test_delete_tree_and_list(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        for k in ("a.b", "a.c", "a.c.d", "b"):
            await c.set(P(k), k)
        assert await c.list(P("a")) == ["b", "c"]
        assert await c.list(P(":")) == ["a", "b"]
        res = await c.delete(P("a"), recursive=True)
        assert res.count == 3
        assert [r.path async for r in c.get_tree(P(":"))] == [P("b")]
        assert await c.list(P(":")) == ["b"]


async def test_get_tree_depths_and_types(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("t"), 0)
        await c.set(P("t:2"), "int two")
        await c.set(P("t:t"), "true")
        await c.set(P("t.x:vab"), b"\x00bin")
        await c.set(P("t.x.y.z"), {"deep": [1, 2]})
        items = [(r.path, r.value) async for r in c.get_tree(P("t"))]
        assert items[0] == (P(":"), 0)
        assert (P(":2"), "int two") in items
        assert (P(":t"), "true") in items
        assert (P("x:vab"), b"\x00bin") in items
        assert all(type(p) is Path for p, _ in items)
        shallow = [r.path async for r in c.get_tree(P("t"), min_depth=1, max_depth=1)]
        assert P("x.y.z") not in shallow and P(":2") in shallow and P(":") not in shallow


async def test_watch_fetch_then_changes(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c, open_memory_client(s) as c2:
        await c.set(P("one.two.three"), 1)
        await c.set(P("one.other"), 9)
        seen = []
        async with c.watch(P("one.two"), fetch=True) as w:
            it = w.__aiter__()
            first = await it.__anext__()
            assert first.path == P("three") and first.value == 1
            assert "path" not in await it.__anext__()  # uptodate marker
            await c2.set(P("one.two.four"), 4)
            await c2.set(P("one.other"), 10)  # outside: not seen
            await c2.delete(P("one.two.three"))
            for _ in range(2):
                seen.append(await it.__anext__())
        assert seen[0].path == P("four") and seen[0].value == 4
        assert seen[1].path == P("three") and "value" not in seen[1]


async def test_watch_stops_cleanly(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        async with c.watch(P("a")) as w:
            pass
        assert not s.watches.by_prefix
        await c.set(P("a.b"), 1)  # no watcher left: nothing breaks
        assert w.done


async def test_concurrent_requests_one_connection(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        async with trio.open_nursery() as n:
            for i in range(200):
                n.start_soon(c.set, P(f"c.k{i}"), i)
        got = {r.path[0]: r.value async for r in c.get_tree(P("c"))}
        assert got == {f"k{i}": i for i in range(200)}


async def test_bad_requests_get_errors(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        with pytest.raises(UnknownActionError):
            await c.request("no_such_action")
        with pytest.raises(ClientError, match="must be a path"):
            await c.request("get_value", path=12)
        with pytest.raises(PathError):
            await c.request("get_value", path=["a", None])
        with pytest.raises(ClientError, match="needs a value"):
            await c.request("set_value", path=P("a"))
        with pytest.raises(ClientError, match="chain must be"):
            await c.set(P("a"), 1)
            await c.set(P("a"), 1, chain=[5])
        # still serving
        assert (await c.get(P("a"))).value == 1


async def test_notgiven_is_not_none(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("n"), None)
        res = await c.get(P("n"))
        assert "value" in res and res.value is None
        assert NotGiven is not None and not NotGiven


async def test_cancelled_reader_hands_over(autojump_clock):
    """A request cancelled while it is the task reading the socket must not strand the
    other waiting requests (the reader role passes on)."""
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("k"), 1)
        results = []

        async def getter():
            results.append((await c.get(P("k"))).value)

        async with trio.open_nursery() as n:
            with trio.CancelScope() as scope:
                scope.cancel()
                await c.get(P("k"))  # cancelled before or while reading
            for _ in range(20):
                n.start_soon(getter)
        assert results == [1] * 20
        assert (await c.get(P("k"))).value == 1


async def test_requests_while_watching(autojump_clock):
    async with open_test_server() as s, open_memory_client(s) as c:
        async with c.watch(P("w")) as w:
            for i in range(50):
                await c.set(P("w.x"), i)
                assert (await c.get(P("w.x"))).value == i
            got = [(await w.__anext__()).value for _ in range(50)]
        assert got == list(range(50))


async def test_tcp_large_values_and_concurrency():
    """Over real TCP: a value larger than the socket buffer (partial sends), and many
    tasks sharing the connection, arrive intact."""
    from distkv.testing.server import open_tcp_client

    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        big = b"\x01" * (3 * 1024 * 1024)
        await c.set(P("big"), big)
        assert (await c.get(P("big"))).value == big
        async with trio.open_nursery() as n:
            for i in range(300):
                n.start_soon(c.set, P(f"t.k{i}"), "v" * (i * 37))
        got = {r.path[0]: r.value async for r in c.get_tree(P("t"))}
        assert got == {f"k{i}": "v" * (i * 37) for i in range(300)}
