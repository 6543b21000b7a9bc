"""Replication through the real server code on an in-memory bus (autojump clock)."""

import pytest
import trio

from distkv.auth import get_method
from distkv.bus.memory import MemoryNetwork
from distkv.core.acl import user_path
from distkv.core.path import Path
from distkv.exceptions import NotReadyError, ServerError
from distkv.groups import unwrap_group
from distkv.server import Server
from distkv.testing.cluster import open_test_cluster, tree_snapshot
from distkv.testing.wait import eventually
from distkv.util import P


async def until(pred, timeout=30, step=0.01):
    await eventually(pred, timeout=timeout, step=step)


async def value_on(cl, node, path):
    async with cl.client(node) as c:
        return (await c.get(P(path))).get("value")


async def test_join_syncs_whole_tree(autojump_clock):
    async with open_test_cluster(1) as cl:
        async with cl.client("n1") as c:
            for i in range(300):
                await c.set(P(f"data.k{i}"), {"i": i})
            await c.delete(P("data.k7"))
        n2 = await cl.start("n2", wait_ready=True)
        assert tree_snapshot(n2) == tree_snapshot(cl["n1"])
        async with cl.client("n2") as c:
            assert (await c.get(P(":"))).value == "Testing"
            got = [r async for r in c.get_tree(P("data"))]
            assert len(got) == 299
        st = n2.replicator.state()
        assert st["last_sync"]["from"] == "n1"
        # the peer's client address came from its retained presence record
        assert st["peers"]["n1"]["addr"] == list(cl["n1"].ports[0])
        await cl.wait_converged()


async def test_writes_and_watch_cross_nodes(autojump_clock):
    async with open_test_cluster(3) as cl:
        async with cl.client("n2") as w2, cl.client("n1") as c1, cl.client("n3") as c3:
            async with w2.watch(P("w"), fetch=True) as watch:
                it = watch.__aiter__()
                assert (await it.__anext__()).state == "uptodate"
                await c1.set(P("w.a"), 1)
                ev = await it.__anext__()
                assert (ev.path, ev.value) == (P("a"), 1) and "conflict" not in ev
                await c3.set(P("w.b"), 2)
                ev = await it.__anext__()
                assert (ev.path, ev.value) == (P("b"), 2)
                await c3.delete(P("w.a"))
                ev = await it.__anext__()
                assert ev.path == P("a") and "value" not in ev
        await cl.wait_converged()
        assert await value_on(cl, "n1", "w.b") == 2
        assert await value_on(cl, "n2", "w.a") is None


async def test_node_without_data_waits_for_a_peer(autojump_clock):
    net = MemoryNetwork()
    async with open_test_cluster(0, net, cfg={"server": {"ready_timeout": 2}}) as cl:
        n2 = await cl.start("n2")  # no -i, no state: must not invent a network
        await trio.sleep(5)
        assert not n2.replica.ready
        assert n2.replicator.state()["status"] == "waiting for peer"
        async with cl.client("n2") as c:
            assert (await c.ping()).node == "n2"
            st = await c.get_state()
            assert st.replication["ready"] is False
            with pytest.raises(NotReadyError):
                await c.get(P(":"))  # bounded wait, then a clear error
            assert n2.replica.tree.count() == 1  # nothing was invented

            async def late_get():
                return (await c.get(P(":"))).value

            async with trio.open_nursery() as nursery:
                res = []

                async def getter():
                    res.append(await late_get())

                nursery.start_soon(getter)
                await trio.sleep(0.5)
                await cl.start("n1", init="Testing")
            assert res[-1] == "Testing"  # a request made while waiting is served
        assert n2.replica.ready
        await cl.wait_converged()


async def test_restart_without_state_keeps_ticks(autojump_clock):
    async with open_test_cluster(2) as cl:
        async with cl.client("n1") as c:
            for i in range(20):
                await c.set(P(f"a.k{i}"), i)
        await cl.wait_converged()
        tick_before = cl["n1"].replica.tick
        await cl.stop("n1", crash=True)  # kill -9: the will marks it offline
        async with cl.client("n2") as c:
            await c.set(P("a.while_down"), "yes")
        n1 = await cl.start("n1", wait_ready=True)  # no -i, no state
        assert n1.replica.tick == tick_before  # learned from the peer, not reset
        assert await value_on(cl, "n1", "a.while_down") == "yes"
        assert await value_on(cl, "n1", ":") == "Testing"
        async with cl.client("n1") as c:
            await c.set(P("a.after"), "new")
        assert n1.replica.tick == tick_before + 1

        async def seen():
            return await value_on(cl, "n2", "a.after") == "new"

        await until(seen)  # not mistaken for an old, already seen tick
        await cl.wait_converged()


async def test_split_brain_converges_and_records_conflicts(autojump_clock):
    net = MemoryNetwork()
    async with open_test_cluster(2, net) as cl:
        async with cl.client("n1") as c1, cl.client("n2") as c2:
            await c1.set(P("s.same"), "base")
            await c1.set(P("s.gone"), "old")
            await cl.wait_converged()
            async with c1.watch(P("s.same")) as watch:
                net.stop_broker()
                await c1.set(P("s.only1"), 1)
                await c2.set(P("s.only2"), 2)
                await c1.set(P("s.same"), "from n1")
                await trio.sleep(0.002)  # (the cluster's clock is trio's)
                await c2.set(P("s.same"), "from n2")  # later: wins everywhere
                await c2.set(P("s.gone"), "newer?")
                await trio.sleep(0.002)
                await c1.delete(P("s.gone"))  # the later delete wins over that write
                assert (await c1.get(P("s.only1"))).value == 1  # both sides keep serving
                await trio.sleep(20)  # long enough for the peers to look dead
                net.start_broker()
                await cl.wait_converged()
                ev = None
                with trio.fail_after(5):
                    async for ev in watch:
                        if ev.get("conflict"):
                            break
                assert ev.conflict and ev.value == "from n2"
        for node in ("n1", "n2"):
            assert await value_on(cl, node, "s.same") == "from n2"
            assert await value_on(cl, node, "s.gone") is None
            assert await value_on(cl, node, "s.only1") == 1
            assert await value_on(cl, node, "s.only2") == 2
        # the conflict is recorded where users can see it, per detecting node
        recs = [v for k, v in tree_snapshot(cl["n2"]).items() if k[:2] == (".distkv", "conflict")]
        paths = {r[0]["path"] for r in recs}
        assert P("s.same") in paths and P("s.gone") in paths
        assert cl["n1"].replica.conflicts + cl["n2"].replica.conflicts >= 1


async def test_lossy_bus_is_repaired(autojump_clock):
    net = MemoryNetwork(seed=3, drop=0.2)
    # repair requests and answers get lost too: cap the backoff to keep the test short
    async with open_test_cluster(3, net, replica={"repair_max_backoff_ms": 4000}) as cl:
        async with cl.client("n1") as c1, cl.client("n3") as c3:
            for i in range(200):
                await (c1 if i % 2 else c3).set(P(f"l.k{i}"), i)
        await cl.wait_converged(timeout=120)
        assert net.dropped > 0
        st = cl["n2"].state()["replication"]
        assert all(not t["missing"] for t in st["ticks"].values())


async def test_state_shows_ticks_and_peers(autojump_clock):
    net = MemoryNetwork()
    async with open_test_cluster(2, net) as cl:
        async with cl.client("n1") as c:
            await c.set(P("x"), 1)
            await cl.wait_converged()
            net.partition("n2")
            await c.set(P("y"), 2)  # n2 is cut off: it misses tick 3 of n1
            net.heal()
            cl["n2"].replica.known["n1"] = 3  # what n1's next presence will say
            st2 = cl["n2"].state()["replication"]
            assert st2["ticks"]["n1"]["seen"] == [[1, 3]]
            assert st2["ticks"]["n1"]["missing"] == [[3, 4]]
            await cl.wait_converged()  # repaired
            st = (await c.get_state()).replication
        assert st["ticks"]["n1"] == {"seen": [[1, 4]], "known": 3, "missing": []}
        assert st["peers"]["n2"]["live"] is True and st["peers"]["n2"]["ready"] is True
        assert st["bus"]["connected"] is True and st["status"] == "ready"
        assert cl["n2"].state()["replication"]["ticks"]["n1"]["missing"] == []


async def test_tombstones_purged(autojump_clock):
    async with open_test_cluster(2) as cl:
        async with cl.client("n1") as c:
            await c.set(P("t.a"), 1)
            await c.delete(P("t.a"))
        await cl.wait_converged()
        with trio.fail_after(60):
            while any(s.replica.tree.lookup(P("t.a")) is not None for s in cl.servers.values()):
                await trio.sleep(0.5)
        for s in cl.servers.values():
            assert s.replicator.state()["tombstones"] == 0
            assert s.replica.horizon.get("n1", 0) >= 3


async def test_nodes_log_in_with_connect_auth(autojump_clock, caplog):
    auth = {"connect": {"auth": "_test name=root"}}
    async with open_test_cluster(1, cfg=auth) as cl:
        async with cl.client("n1") as c:
            _name, record = get_method("_test").make_user({"name": "root"})
            await c.set(user_path("_test", "root"), record)
            await c.set(Path(None, "auth"), {"current": "_test"})
        n2 = await cl.start("n2", wait_ready=True)  # logs in with connect.auth
        assert n2.auth_required
        # without credentials a joining node cannot sync (and keeps waiting)
        n3 = await cl.start("n3", cfg=cl.config(connect={"auth": None}))
        with trio.fail_after(10):
            while n3.replicator.stats["sync_failures"] == 0:
                await trio.sleep(0.1)
        assert not n3.replica.ready
        # refused with a clear log line that says what to fix, not a silent hang
        assert any(
            r.levelname == "ERROR" and "refused our login" in r.getMessage()
            and "connect.auth" in r.getMessage()
            for r in caplog.records
        )  # fmt: skip
        await cl.stop("n3")
        await cl.wait_converged()


async def test_single_node_without_broker_serves(autojump_clock):
    net = MemoryNetwork()
    net.stop_broker()
    async with open_test_cluster(1, net) as cl:
        async with cl.client("n1") as c:
            await c.set(P("a"), 1)
            assert (await c.get(P("a"))).value == 1
            await trio.sleep(30)
            st = (await c.get_state()).replication
            assert st["ready"] and not st["bus"]["connected"]
            for i in range(100):
                await c.set(P(f"b.{i}"), i)
            assert (await c.get(P("b.99"))).value == 99


async def test_restart_with_state_catches_up_before_serving(autojump_clock, tmp_path):
    """A node restarted with its own (old) state does not serve stale data: it first
    repairs what it missed while it was down."""
    async with open_test_cluster(2) as cl:
        await cl.stop("n2")
        cfg = cl.config(server={"state_dir": str(tmp_path / "n2")})
        await cl.start("n2", cfg=cfg, wait_ready=True)  # joins, and now keeps state
        async with cl.client("n1") as c:
            await c.set(P("a.one"), 1)
        await cl.wait_converged()
        await cl.stop("n2", crash=True)
        async with cl.client("n1") as c:
            for i in range(10):
                await c.set(P(f"a.missed{i}"), i)
        n2 = await cl.start("n2", cfg=cfg)
        assert n2.replicator.status == "catching up"
        # the first request waits for the catch-up instead of answering from old state
        assert await value_on(cl, "n2", "a.missed9") == 9
        assert await value_on(cl, "n2", "a.one") == 1
        assert not n2.replicator.catchup_incomplete
        await cl.wait_converged()


async def test_the_later_of_two_nodes_with_one_name_stops(autojump_clock, caplog):
    """Two nodes with one name (a cloned SD card keeps its host name) would write
    colliding ticks: the one that started later stops with one line; the other says
    so once and keeps serving."""
    net = MemoryNetwork()
    async with open_test_cluster(1, net) as first:
        with trio.fail_after(30), pytest.raises(ServerError) as err:
            async with open_test_cluster(0, net) as second:
                await second.start("n1")  # the same name, another process
                await trio.sleep_forever()  # until it stops
        assert "another node named 'n1' is already running" in str(err.value)
        assert first["n1"].replicator.state()["name_clash"]  # visible in internal state
        async with first.client("n1") as c:
            await c.set(P("still.serving"), 1)
    lines = [r.getMessage() for r in caplog.records if "another node named" in r.getMessage()]
    assert len(lines) == 1 and "that one stops" in lines[0], lines


async def test_init_on_a_network_that_exists_is_refused(autojump_clock):
    """-i on a running network would overwrite its root value: refused in one line,
    unless forced; a node that left a retained offline record counts too."""
    net = MemoryNetwork()

    async def start(name, **kw):
        srv = Server(name, cl.config(), init="Other", bus=net, clock=cl.clock, **kw)
        with unwrap_group():
            async with trio.open_nursery() as nursery:
                await nursery.start(srv.serve)
                nursery.cancel_scope.cancel()
        return srv

    async with open_test_cluster(2, net) as cl:
        with pytest.raises(ServerError, match=r"network 'distkv' already has nodes \(n1, n2\)"):
            await start("n3")
        async with cl.client("n1") as c:
            assert (await c.get(P(":"))).value == "Testing"
        await cl.stop("n2")  # offline now, its retained record remains
        await cl.stop("n1")
        with pytest.raises(ServerError, match=r"already has nodes \(n1, n2\)"):
            await start("n3")
        forced = await start("n4", force_init=True)
        assert forced.replica.tree.root.value == "Other"
