"""Rough edges of the Python API a newcomer meets first (issue: the newcomer's first hour)."""

import subprocess
import sys

from distkv.client import open_client
from distkv.testing.server import open_memory_client, open_test_server
from distkv.util import P


async def test_tuple_children_come_back_as_tuples():
    async with open_test_server() as s, open_memory_client(s) as c:
        await c.set(P("t") + ((1, 2),), "pair")
        await c.set(P("t.plain"), "x")
        children = await c.list(P("t"))
        assert len(children) == 2 and (1, 2) in children and "plain" in children
        assert [type(x) for x in children if x != "plain"] == [tuple]


async def test_tuples_survive_in_paths_and_values_come_back_as_lists():
    """What docs/tutorial.md promises (issue #16, item 4): tuples as path elements
    round-trip (get, list, get_tree, watch); a tuple *value* is stored as a list and
    comes back as one (msgpack has one array type; lists stay the wire format), and
    a path inside a value stays a path."""
    async with open_test_server() as s, open_memory_client(s) as c:
        key = P("t") + ((1, (2, "x")),)
        async with c.watch(P("t")) as w:
            await c.set(key, ("Test", 42, (False, None)))
            ev = await w.__anext__()
        assert ev.path == P(":") + ((1, (2, "x")),) and type(ev.path[0][1]) is tuple
        assert ev.value == ["Test", 42, [False, None]]
        res = await c.get(key)
        assert res.value == ["Test", 42, [False, None]] and type(res.value) is list
        assert [r.path async for r in c.get_tree(P("t"))] == [ev.path]
        assert await c.list(P("t")) == [(1, (2, "x"))]
        await c.set(P("t.where"), {"at": key})
        assert type((await c.get(P("t.where"))).value["at"]) is type(key)


async def test_connection_settings_can_be_given_directly():
    async with open_test_server(tcp=True, init="x") as s:
        host, port = s.ports[0]
        async with open_client(host=host, port=port, reconnect=False) as c:
            assert (await c.get(P(":"))).value == "x"
            assert c.cfg["connect"]["port"] == port


def test_an_uncaught_api_error_prints_one_traceback(tmp_path):
    """Not a traceback of the error, wrapped in a traceback of a trio ExceptionGroup."""
    script = tmp_path / "boom.py"
    script.write_text(
        "import trio\n"
        "from distkv.testing.server import open_memory_client, open_test_server\n"
        "from distkv.util import P\n"
        "async def main():\n"
        "    async with open_test_server() as s, open_memory_client(s) as c:\n"
        "        await c.set(P('a'), 1)\n"
        "        await c.set(P('a'), 2, chain=None)\n"
        "trio.run(main)\n"
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.count("Traceback") == 1, res.stderr
    assert "During handling of the above exception" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("distkv.exceptions.ClientChainError")


async def test_listing_what_you_may_not_read_is_an_error():
    import pytest

    from distkv.core.acl import acl_path, user_path
    from distkv.core.runner import CODE_ROOT
    from distkv.exceptions import PermissionDenied
    from distkv.util import Path

    async with open_test_server() as s:
        async with open_memory_client(s) as root:
            await root.set(P("pub.a"), 1)
            await root.set(P("priv.x"), 2)
            await root.set(Path(*CODE_ROOT, "secret"), {"code": "pass"})
            await root.set(acl_path("ro", P("pub.#")), "rx")
            await root.set(user_path("_test", "joe"), {"acl": "ro"})
            await root.set(user_path("_test", "root"), {})
            await root.set(Path(None, "auth"), {"current": "_test"})
        async with open_memory_client(s, connect={"auth": "_test name=joe"}) as joe:
            assert [r.path async for r in joe.get_tree(P("pub"))] == [P("a")]
            assert [r.path async for r in joe.get_tree(P("pub.none"))] == []  # may read, empty
            for hidden in (P("priv"), Path(*CODE_ROOT)):
                with pytest.raises(PermissionDenied, match="joe may not"):
                    [r async for r in joe.get_tree(hidden)]


async def test_a_value_over_the_servers_limit_is_refused_and_the_connection_lives():
    import pytest

    from distkv.exceptions import ValueTypeError
    from distkv.testing.server import make_config

    cfg = make_config(server={"max_message": 100_000})
    async with open_test_server(cfg=cfg) as s, open_memory_client(s) as c:
        with pytest.raises(ValueTypeError, match="the server takes at most 100000"):
            await c.set(P("big"), "x" * 200_000)
        await c.set(P("small"), "fine")  # same connection, no reconnect needed
        assert (await c.get(P("small"))).value == "fine"
