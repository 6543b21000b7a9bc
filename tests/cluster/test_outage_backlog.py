"""Writes made while the broker is away: held by the writer, bounded by
``server.outage_backlog_mb``, sent on reconnect (issue 15, item 13). Real server code
on the in-memory bus; the full-size measurement is the bench row ``repl_outage``."""

import trio

from distkv.bus.memory import MemoryNetwork
from distkv.testing.cluster import open_test_cluster, tree_snapshot
from distkv.util import P


async def test_writes_during_an_outage_arrive_from_the_backlog(autojump_clock):
    """Before, each batch of writes became one bus message in the bus's offline queue,
    which holds 10,000: a writer one set at a time lost the rest to repair, and repair
    found each lost tick by scanning the whole tree. Now nothing is dropped and the
    peer asks for nothing."""
    net = MemoryNetwork()
    async with open_test_cluster(2, net) as cl:
        async with cl.client("n1") as c:
            await c.set(P("b.start"), 0)
            await cl.wait_converged()
            net.stop_broker()
            for i in range(10_500):
                await c.set(P(f"b.k{i}"), i)
            await c.delete(P("b.k7"))
            bus = (await c.get_state()).replication["bus"]
            assert 10_500 * 50 < bus["held_bytes"] < 10_500 * 200
            net.start_broker()
            await cl.wait_converged()
        st1 = cl["n1"].replicator.stats
        assert st1["overflow"] == 0
        assert st1["repairs"] == 0  # n2 got it all from the backlog, in order
        assert cl["n1"].replicator.state()["bus"]["held_bytes"] == 0
        snap = tree_snapshot(cl["n2"])
        assert sum(1 for k in snap if k[:1] == ("b",)) == 1 + 10_500 - 1  # b.start, k7 deleted


async def test_past_the_bound_writes_are_counted_and_repaired(autojump_clock):
    """``server.outage_backlog_mb`` bounds the memory an outage may take; what does
    not fit is counted as overflow and repaired by the peers (the tree scan), deletes
    included."""
    net = MemoryNetwork()
    cfg = {"server": {"outage_backlog_mb": 1}}
    async with open_test_cluster(2, net, cfg=cfg) as cl:
        async with cl.client("n1") as c:
            await c.set(P("b.start"), 0)
            await cl.wait_converged()
            net.stop_broker()
            for i in range(4000):
                await c.set(P(f"b.k{i}"), "x" * 400)
            for i in range(0, 4000, 100):
                await c.delete(P(f"b.k{i}"))
            held = (await c.get_state()).replication["bus"]["held_bytes"]
            assert 1024 * 1024 - 600 < held <= 1024 * 1024
            net.start_broker()
            with trio.fail_after(120):
                await cl.wait_converged()
        st1 = cl["n1"].replicator.stats
        assert st1["overflow"] > 1000
        assert st1["repairs"] > 0
        snap = tree_snapshot(cl["n2"])
        assert sum(1 for k in snap if k[:1] == ("b",)) == 1 + 3960  # b.start
        assert ("b", "k100") not in snap


async def test_the_backlog_waits_for_peers_that_reconnect_later(autojump_clock):
    """After a broker restart the nodes reconnect in any order; what the writer sends
    before a peer is back is lost for it (clean sessions) and had to be repaired by
    tree scans. The backlog waits until the peers that were online are heard from
    again, and goes out after a bounded wait if one never comes back."""
    net = MemoryNetwork()
    async with open_test_cluster(3, net) as cl:
        async with cl.client("n1") as c:
            await c.set(P("b.start"), 0)
            await cl.wait_converged()
            net.stop_broker()
            net.partition("n2", "n3")
            for i in range(2000):
                await c.set(P(f"b.k{i}"), i)
            net.start_broker()  # n1 is back first
            await trio.sleep(1)
            assert (await c.get_state()).replication["bus"]["held_bytes"] > 0
            net.heal("n2")  # n2 a second later; n3 never (within the test)
            with trio.fail_after(6):
                while (await c.get_state()).replication["bus"]["held_bytes"]:
                    await trio.sleep(0.05)
            await cl.stop("n3")
            await cl.wait_converged()
        assert cl["n1"].replicator.stats["repairs"] == 0
        assert sum(1 for k in tree_snapshot(cl["n2"]) if k[:1] == ("b",)) == 2001
