"""Busy-polling a socket before sleeping: fast answers, fair to other tasks, and off
again as soon as the peer is slow."""

import os
import socket
from contextlib import asynccontextmanager

import trio

from distkv.busypoll import BusyPoller, default_budget_us
from distkv.client import open_client
from distkv.server.server import Server
from distkv.testing.server import make_config, open_test_server
from distkv.util import P


@asynccontextmanager
async def _pair():
    """(stream, raw, peer): a trio stream, a stdlib socket on the same connection (as
    client and server make them), and the other end."""
    a, peer = trio.socket.socketpair()
    stream = trio.SocketStream(a)
    raw = socket.socket(fileno=os.dup(a.fileno()))
    try:
        yield stream, raw, peer
    finally:
        raw.close()
        peer.close()
        await stream.aclose()


async def test_poll_receives_what_arrives_and_stays_on():
    async with _pair() as (stream, raw, peer):
        poller = BusyPoller(raw, stream, 1_000_000)
        async with trio.open_nursery() as n:
            n.start_soon(peer.send, b"hello")
            assert await poller.receive_some(100) == b"hello"
        assert poller.hot


async def test_polling_lets_timers_and_other_tasks_run():
    """The sender here needs a timer to fire while the receiver polls: if polling
    blocked the event loop, the poll would run out first and switch itself off."""
    async with _pair() as (stream, raw, peer):
        poller = BusyPoller(raw, stream, 2_000_000)

        async def send_later():
            await trio.sleep(0.01)
            await peer.send(b"late")

        async with trio.open_nursery() as n:
            n.start_soon(send_later)
            with trio.fail_after(1):
                assert await poller.receive_some(100) == b"late"
        assert poller.hot


async def test_slow_peer_switches_polling_off_and_a_quick_one_back_on():
    async with _pair() as (stream, raw, peer):
        poller = BusyPoller(raw, stream, 1000)  # 1 ms

        async def send_after(delay, data):
            await trio.sleep(delay)
            await peer.send(data)

        async with trio.open_nursery() as n:
            n.start_soon(send_after, 0.05, b"slow")
            assert await poller.receive_some(100) == b"slow"
        assert not poller.hot
        await peer.send(b"quick")  # already there when we ask
        assert await poller.receive_some(100) == b"quick"
        assert poller.hot


async def test_poll_false_sleeps_without_touching_the_socket():
    class Spy:
        calls = 0

        def recv(self, *a):
            self.calls += 1
            raise BlockingIOError

    async with _pair() as (stream, raw, peer):
        spy = Spy()
        poller = BusyPoller(spy, stream, 1_000_000)
        await peer.send(b"x")
        assert await poller.receive_some(100, poll=False) == b"x"
        assert spy.calls == 0


async def test_peer_closing_during_a_poll_is_end_of_stream():
    async with _pair() as (stream, raw, peer):
        poller = BusyPoller(raw, stream, 1_000_000)
        peer.close()
        assert await poller.receive_some(100) == b""


def test_budget_comes_from_the_config():
    assert Server("n", make_config(server={"busy_poll": 0})).busy_poll_us == 0
    assert Server("n", make_config(server={"busy_poll": 50})).busy_poll_us == 50
    assert Server("n", make_config()).busy_poll_us == default_budget_us()


async def test_tcp_round_trips_with_and_without_polling():
    for budget in (0, 200):
        cfg = make_config(server={"busy_poll": budget})
        async with open_test_server(tcp=True, cfg=cfg, init="Testing") as s:
            host, port = s.ports[0]
            async with open_client(connect={"host": host, "port": port, "busy_poll": budget}) as c:
                for i in range(200):
                    await c.set(P("bp.k"), i)
                    assert (await c.get(P("bp.k"))).value == i
