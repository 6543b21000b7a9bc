"""An in-process cluster: real :class:`~distkv.server.Server` code on a MemoryNetwork.

Every node runs the real server (sessions, commands, the
:class:`~distkv.server.replication.Replicator`) in this process; the bus is a
:class:`~distkv.bus.memory.MemoryNetwork` (deterministic, with partitions, broker
outages and message loss), the replication clock is trio's clock (so the autojump
clock drives whole clusters), and joining nodes reach their peer's client protocol
through in-memory streams instead of TCP::

    async with open_test_cluster(2) as cl:         # "n1" with -i "Testing", "n2" joins
        async with cl.client("n2") as c:
            assert (await c.get(P(":"))).value == "Testing"
        cl.net.stop_broker()
        ...
        await cl.wait_converged()

Each server still opens a TCP listener on a free loopback port (``Server.serve`` does),
which tests may use with :func:`distkv.testing.server.open_tcp_client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio.testing

from ..bus.memory import MemoryNetwork
from ..client import Client, open_client
from ..config import merge
from ..core.types import NotGiven
from ..groups import unwrap_group
from ..server import Server
from .server import attach_stream, make_config, open_memory_client, serve_clients_in

__all__ = ["TestCluster", "open_test_cluster", "tree_snapshot"]

#: Replica timings for tests: quick repair and purging (virtual time is free anyway).
TEST_REPLICA = {"purge_interval_ms": 5_000}


def tree_snapshot(server: Server) -> dict:
    """``{path: (value, node, tick)}`` of every entry with a value: what must agree
    between converged replicas (chains may legitimately differ below a purge horizon)."""
    out = {}
    for rel, e in server.replica.tree.walk(sort=False):
        if e.value is not NotGiven:
            out[rel] = (e.value, e.node, e.tick)
    return out


class TestCluster:
    """The running nodes of :func:`open_test_cluster`; see the module docstring."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        net: MemoryNetwork,
        nursery: trio.Nursery,
        cfg: dict | None = None,
        replica: dict | None = None,
    ):
        self.net = net
        self.servers: dict[str, Server] = {}
        self._nursery = nursery
        self._cfg = cfg or {}
        self._replica = {**TEST_REPLICA, **(replica or {})}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    @staticmethod
    def clock() -> int:
        return int(trio.current_time() * 1000) + 1_000_000

    def config(self, **over: Any) -> dict:
        return make_config(**merge(self._cfg, over))

    async def start(
        self,
        name: str,
        *,
        init: Any = NotGiven,
        cfg: dict | None = None,
        replica: dict | None = None,
        wait_ready: bool = False,
    ) -> Server:
        """Start node ``name`` (a new network's first node needs ``init``)."""
        if name in self.servers:
            raise ValueError(f"node {name} is running already")
        cfg = cfg or self.config()
        server = Server(
            name,
            cfg,
            init=init,
            bus=self.net,
            clock=self.clock,  # writes are stamped with trio's clock too
            connect=partial(self._connect, cfg),
            replica={**self._replica, **(replica or {})},
        )
        done = trio.Event()

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        serve_clients_in(server, nursery)
                        await nursery.start(server.serve)
                        self._scopes[name] = scope
                        task_status.started()
            finally:
                done.set()

        self.servers[name] = server
        self._done[name] = done
        await self._nursery.start(run)
        if wait_ready:
            await self.wait_ready(name)
        return server

    async def stop(self, name: str, *, crash: bool = False) -> None:
        """Stop a node: cleanly (offline presence), or with ``crash`` like kill -9
        (the broker publishes its will)."""
        server = self.servers.pop(name)
        rep = server.replicator
        if crash and rep is not None and rep.bus is not None:
            await rep.bus.crash()
        self._scopes.pop(name).cancel()
        await self._done.pop(name).wait()

    @asynccontextmanager
    async def _connect(self, cfg: dict, peer: str, addr) -> AsyncIterator[Client]:
        """How a joining node reaches a peer's client protocol: an in-memory stream."""
        srv = self.servers.get(peer)
        if srv is None:
            from ..exceptions import ServerClosedError

            raise ServerClosedError(f"no such node {peer}")
        async with open_client(cfg, _stream=attach_stream(srv)) as client:  # with its auth
            yield client

    def client(self, name: str, **cfg: Any):
        """``async with cl.client("n1") as c:`` a client of that node (memory stream)."""
        return open_memory_client(self.servers[name], **cfg)

    async def wait_ready(self, *names: str, timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            for n in names or list(self.servers):
                rep = self.servers[n].replicator
                while rep is None or not rep.ready:
                    await trio.sleep(0.01)
                    rep = self.servers[n].replicator

    def converged(self) -> bool:
        """All running nodes ready, without gaps, holding the same data."""
        snaps = []
        for s in self.servers.values():
            r = s.replica
            if not r.ready or r.gaps():
                return False
            snaps.append(tree_snapshot(s))
        return all(x == snaps[0] for x in snaps[1:])

    async def wait_converged(self, timeout: float = 60) -> None:
        """Poll (every 50 ms of trio time) until :meth:`converged`, bounded."""
        with trio.fail_after(timeout):
            while not self.converged():
                await trio.sleep(0.05)


@asynccontextmanager
async def open_test_cluster(
    n: int = 2,
    net: MemoryNetwork | None = None,
    *,
    init: Any = "Testing",
    cfg: dict | None = None,
    names: list[str] | None = None,
    replica: dict | None = None,
) -> AsyncIterator[TestCluster]:
    """Start ``n`` nodes ``n1..nN`` (or ``names``): the first with ``init`` (like
    ``server -i``), the others joining it; returns once all of them are ready.
    ``replica``: Replica timing overrides for every node (see :class:`Replicator`)."""
    names = names or [f"n{i + 1}" for i in range(n)]
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            cl = TestCluster(net if net is not None else MemoryNetwork(), nursery, cfg, replica)
            for i, name in enumerate(names):
                await cl.start(name, init=init if i == 0 else NotGiven)
            if names:
                await cl.wait_ready()
            yield cl
            nursery.cancel_scope.cancel()
