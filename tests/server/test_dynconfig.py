"""Dynamic configuration: the tree's ``.distkv config NAME`` overrides a section."""

import trio

from distkv.core.acl import acl_path, user_path
from distkv.dynconfig import config_path, watch_config
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P, Path

BASE = {"mqtt": {"topic": "home", "qos": 1}, "owfs": {"interval": 10}}


async def test_overrides_merge_and_follow_changes(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await c.set(config_path("gateways"), {"mqtt": {"topic": "house"}})
        async with watch_config(c, "gateways", BASE) as cfgs:
            first = await cfgs.receive()
            assert first == {"mqtt": {"topic": "house", "qos": 1}, "owfs": {"interval": 10}}
            await c.set(config_path("gateways"), {"owfs": {"interval": 2}})
            assert await cfgs.receive() == {**BASE, "owfs": {"interval": 2}}
            await c.delete(config_path("gateways"))
            assert await cfgs.receive() == BASE
            # other sections and deeper entries do not disturb this one
            await c.set(config_path("runner"), {"x": 1})
            with trio.move_on_after(1):
                await cfgs.receive()
                raise AssertionError("an unrelated entry produced a new configuration")


async def test_an_unreadable_override_is_ignored(autojump_clock):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(config_path("gateways"), {"mqtt": {"topic": "secret"}})
            await c.set(acl_path("plain", P("home.#")), "rwcdx")
            await c.set(user_path("_test", "joe"), {"acl": "plain"})
            await c.set(Path(None, "auth"), {"current": "_test"})
        async with open_memory_client(s, connect={"auth": "_test name=joe"}) as joe:
            async with watch_config(joe, "gateways", BASE) as cfgs:
                assert await cfgs.receive() == BASE
