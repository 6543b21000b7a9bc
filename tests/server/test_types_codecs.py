"""Types and codecs through the server: per-user translation on every read path,
live changes, replication to other nodes, and who may store code."""

import pytest
import trio

from distkv.core.acl import acl_path, user_path
from distkv.exceptions import PermissionDenied, ScriptError, ValueTypeError
from distkv.testing.cluster import open_test_cluster
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P, Path

AUTH = Path(None, "auth")
TWO_DIGITS = {
    "encode": "return '%.2f' % value",
    "decode": "return float(value)",
    "in": [["12.5", 12.5]],
    "out": [[13.25, "13.25"]],
}
INT = {
    "code": 'if int(value) != value: raise ValueError("not an integer")',
    "good": [0, 5],
    "bad": [1.5, "x"],
}


def as_user(name):
    return {"connect": {"auth": f"_test name={name}"}}


async def setup_users(c, **records):
    for name, rec in records.items():
        await c.set(user_path("_test", name), rec)
    await c.set(AUTH, {"current": "_test"})


async def test_codec_user_gets_translated_values_on_every_read_path(autojump_clock):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(Path(None, "codec", "float", "2d"), TWO_DIGITS)
            await c.set(
                Path(None, "conv", "gw", "monitor", "#", "value"), {"codec": ["float", "2d"]}
            )
            await c.set(P("monitor.a.value"), 1.5)
            await setup_users(c, joe={"aux": {"codec": "gw"}}, admin={})
        async with (
            open_memory_client(s, **as_user("joe")) as joe,
            open_memory_client(s, **as_user("admin")) as admin,
        ):
            await joe.set(P("monitor.b.value"), "21.5")
            assert (await admin.get(P("monitor.b.value"))).value == 21.5
            assert (await joe.get(P("monitor.b.value"))).value == "21.50"
            tree = {str(r.path): r.value async for r in joe.get_tree(P("monitor"))}
            assert tree == {"a.value": "1.50", "b.value": "21.50"}

            async with joe.watch(P("monitor"), fetch=True) as w:
                it = w.__aiter__()
                seen = [await it.__anext__() for _ in range(3)]
                assert [m.get("value") for m in seen] == ["1.50", "21.50", None]
                await admin.set(P("monitor.a.value"), 3.25)
                ev = await it.__anext__()
                assert (str(ev.path), ev.value) == ("a.value", "3.25")
                # a stored value the codec cannot encode: the watch goes on, and says so
                await admin.set(P("monitor.a.value"), "warm")
                ev = await it.__anext__()
                assert ev.value == "warm" and "cannot encode 'warm'" in ev.codec_error
                await admin.set(P("monitor.a.value"), 4.0)
                assert (await it.__anext__()).value == "4.00"
            with pytest.raises(ValueTypeError, match="cannot encode 'warm'"):
                await admin.set(P("monitor.c.value"), "warm")
                await joe.get(P("monitor.c.value"))
            # paths the converter does not name pass unchanged, both ways
            await joe.set(P("monitor.b.other"), "21.5")
            assert (await admin.get(P("monitor.b.other"))).value == "21.5"


async def test_changing_a_users_codec_applies_to_open_sessions(autojump_clock):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(Path(None, "codec", "float", "2d"), TWO_DIGITS)
            await c.set(Path(None, "conv", "gw", "t", "+"), {"codec": ["float", "2d"]})
            await c.set(P("t.x"), 2.0)
            await setup_users(c, joe={}, admin={})
        async with (
            open_memory_client(s, **as_user("joe")) as joe,
            open_memory_client(s, **as_user("admin")) as admin,
        ):
            assert (await joe.get(P("t.x"))).value == 2.0
            await admin.set(user_path("_test", "joe"), {"aux": {"codec": "gw"}})
            assert (await joe.get(P("t.x"))).value == "2.00"
            # the converter goes away: joe's reads there fail closed, not silently raw
            await admin.delete(Path(None, "conv", "gw", "t", "+"))
            with pytest.raises(ValueTypeError, match="converter 'gw'"):
                await joe.get(P("t.x"))
            await admin.set(user_path("_test", "joe"), {})
            assert (await joe.get(P("t.x"))).value == 2.0


async def test_types_and_codecs_need_write_rights_on_the_system_tree(autojump_clock):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            await c.set(acl_path("data", P("data.#")), "rwcdx")
            await setup_users(c, joe={"acl": "data"}, root={})
        async with open_memory_client(s, **as_user("joe")) as joe:
            with pytest.raises(PermissionDenied):
                await joe.set(Path(None, "type", "int"), INT)
            with pytest.raises(PermissionDenied):
                await joe.set(Path(None, "codec", "float", "2d"), TWO_DIGITS)
        async with open_memory_client(s, **as_user("root")) as root:
            await root.set(Path(None, "type", "int"), INT)
            assert s.types.types  # stored by a user allowed to write code


async def test_bad_definitions_are_refused_and_store_nothing(autojump_clock):
    async with open_test_server(init="Testing") as s:
        async with open_memory_client(s) as c:
            with pytest.raises(ScriptError, match="bad example 5 passes"):
                await c.set(Path(None, "type", "int"), {**INT, "bad": [5]})
            with pytest.raises(ScriptError, match=r"line 2"):
                await c.set(Path(None, "type", "int"), {**INT, "code": "x = 1\nif x\n"})
            with pytest.raises(ValueTypeError, match="type int is unusable"):
                await c.set(Path(None, "match", "a", "#"), {"type": ["int"]})
            assert "value" not in await c.get(Path(None, "type", "int"))
            await c.set(P("a.b"), "anything")  # no type is bound


async def test_types_replicate_and_guard_writes_on_every_node(autojump_clock):
    async with open_test_cluster(2) as cl:
        async with cl.client("n1") as c:
            await c.set(Path(None, "type", "int"), INT)
            await c.set(Path(None, "match", "stats", "#"), {"type": ["int"]})
        with trio.fail_after(10):
            while not cl["n2"].types.matches:
                await trio.sleep(0.01)
        async with cl.client("n2") as c:
            with pytest.raises(ValueTypeError, match="stats.x: 1.5 is not a valid int"):
                await c.set(P("stats.x"), 1.5)
            await c.set(P("stats.x"), 2)
