"""``Client.send_nowait``/``set_nowait``: a request sent from synchronous code (a bus
message handler) at once, its reply awaited later (the MQTT gateway's write path)."""

import pytest

from distkv.exceptions import ClientChainError, ClientError
from distkv.testing.server import open_memory_client, open_tcp_client, open_test_server
from distkv.testing.wait import value_becomes
from distkv.util import P


async def test_writes_sent_from_sync_code_are_applied_in_order_before_anyone_awaits():
    async with (
        open_test_server(tcp=True) as s,
        open_tcp_client(s) as c,
        open_tcp_client(s) as other,
    ):
        await c.ping()  # connected
        pending = [c.set_nowait(P("n.a"), i) for i in range(50)]  # no await in between
        # nobody awaits the replies yet: the requests left the process anyway
        assert await value_becomes(other, P("n.a"), 49) == 49
        replies = [await p.result() for p in pending]
        tocks = [r.tock for r in replies]
        assert tocks == sorted(tocks) and len(set(tocks)) == 50
        assert (await other.get(P("n.a"), nchain=1)).chain == replies[-1].chain


async def test_without_a_plain_socket_the_next_request_of_any_task_takes_it_along():
    async with open_test_server() as s, open_memory_client(s) as c:
        p = c.set_nowait(P("m"), 1)
        assert (await c.get(P("m"))).value == 1  # sent before the get, answered first
        assert (await p.result()).chain


async def test_errors_come_with_the_reply_or_at_once_and_the_connection_lives():
    async with open_test_server(tcp=True) as s, open_tcp_client(s) as c:
        await c.set(P("e"), 1)
        p = c.set_nowait(P("e"), 2, chain=None)  # "must be new": it is not
        with pytest.raises(ClientChainError):
            await p.result()
        with pytest.raises(ClientError, match="encode"):
            c.set_nowait(P("e"), object())
        assert (await c.send_nowait("get_value", path=P("e")).result()).value == 1
