"""Long-lived clients survive their node going away: they reconnect (to another node
of ``connect.servers``), reads are retried, watches resume without losing or
repeating events."""

from __future__ import annotations

import pytest
import trio

from distkv.client import open_client
from distkv.exceptions import ServerClosedError
from distkv.testing.cluster import open_test_cluster
from distkv.testing.server import make_config, open_tcp_client, open_test_server
from distkv.util import P


def servers_cfg(*servers) -> dict:
    return make_config(
        connect={"servers": [f"{h}:{p}" for s in servers for h, p in s.ports[:1]]}
    )


async def test_watch_resumes_on_another_node_exactly():
    async with open_test_cluster(2) as cl:
        n1, n2 = cl["n1"], cl["n2"]
        async with open_client(servers_cfg(n1, n2)) as c, cl.client("n2") as other:
            for i in range(20):
                await c.set(P("w") + (i,), i)
            await cl.wait_converged()
            events = []
            arrived = trio.Condition()

            async def watcher(task_status=trio.TASK_STATUS_IGNORED):
                async with c.watch(P("w"), fetch=True) as w:
                    async for ev in w:
                        if ev.get("state") == "uptodate":
                            task_status.started()
                            continue
                        events.append((tuple(ev.path), ev.get("value")))
                        async with arrived:
                            arrived.notify_all()

            async def until_seen(*items):
                with trio.fail_after(20):
                    async with arrived:
                        while not all(i in events for i in items):
                            await arrived.wait()

            async with trio.open_nursery() as nursery:
                await nursery.start(watcher)
                assert len(events) == 20
                assert c.node == "n1"
                await cl.stop("n1", crash=True)
                # changes while the client is away: one new, one changed, one deleted
                await other.set(P("w.new"), "x")
                await other.set(P("w") + (3,), 333)
                await other.delete(P("w") + (4,))
                await until_seen((("new",), "x"), ((3,), 333), ((4,), None))
                assert c.node == "n2"
                # and live changes after the reconnect arrive as usual
                await other.set(P("w") + (5,), 555)
                await until_seen(((5,), 555))
                nursery.cancel_scope.cancel()
        # every change exactly once, nothing unchanged repeated
        assert sorted(events[20:], key=repr) == sorted(
            [(("new",), "x"), ((3,), 333), ((4,), None), ((5,), 555)], key=repr
        )


async def test_reads_are_retried_writes_in_flight_fail_new_ones_wait():
    async with open_test_server(tcp=True, init="x") as s1:
        port = s1.ports[0][1]
        cfg = make_config(connect={"port": port})
        async with open_client(cfg) as c:
            await c.set(P("a"), 1)
            s1.close_clients()  # the node drops every connection (like a restart)
            # a new request waits for the reconnection, then goes through
            with trio.fail_after(10):
                assert (await c.get(P("a"))).value == 1
                await c.set(P("b"), 2)
                assert (await c.get(P("b"))).value == 2


async def test_no_reconnect_when_switched_off():
    async with open_test_server(tcp=True, init="x") as s:
        async with open_tcp_client(s, connect={"reconnect": False}) as c:
            await c.ping()
            s.close_clients()
            with pytest.raises(ServerClosedError):
                with trio.fail_after(5):
                    while True:
                        await c.ping()
                        await trio.sleep(0.01)


async def test_first_connection_tries_each_server():
    async with open_test_server(tcp=True, init="x") as s:
        host, port = s.ports[0]
        # a free port (nobody listens) first, the real server second
        probe = trio.socket.socket()
        await probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
        probe.close()
        cfg = make_config(connect={"servers": [f"127.0.0.1:{dead}", f"{host}:{port}"]})
        async with open_client(cfg) as c:
            assert (await c.ping()).node == s.name
