"""The tutorial's commands, run as a user would: a real server, real CLI processes.

Sections: "Start the server" (one node), "Data commands", "Path specification",
"The Python API", "Watching for Changes", "Active objects".
"""

import sys
import textwrap

import pytest

from distkv.testing.process import ok, read_line

pytestmark = pytest.mark.slow

DKD = 'dkd() { distkv client data "$@"; }; '


def test_start_server_and_read_root(server):
    assert server.start("-i", "Testing") == "Running."
    assert ok(server.run("distkv client data :")) == '"Testing"\n'


def test_data_commands(server):
    server.start("-i", "Testing")
    out = ok(
        server.run(
            DKD
            + "dkd one.two.three set -e : 123 && "
            + "dkd one.two.three.four set -e : 1234 && "
            + "dkd one.two.three.four.five set -v one XXX -e two 2 && "
            + "dkd one.two.three && dkd one.two.three.four.five"
        )
    )
    assert out == "123\none: XXX\ntwo: 2\n"
    out = ok(
        server.run(DKD + "dkd one.two.three.four.five set -e one 1 && dkd one.two.three.four.five")
    )
    assert out == "one: 1\ntwo: 2\n"
    expected = textwrap.dedent(
        """\
        two:
          three:
            _: 123
            four:
              _: 1234
              five:
                _:
                  one: 1
                  two: 2
        """
    )
    assert ok(server.run(DKD + "dkd get -rd_ one")) == expected
    assert ok(server.run(DKD + "dkd one get -rd_")) == expected


def test_more_data_commands(server):
    server.start("-i", "Testing")
    ok(
        server.run(
            DKD + "dkd a.b set -e : 1 && dkd a.c set -v : x && dkd a.c.d set -e : '(1, b\"z\")'"
        )
    )
    assert ok(server.run(DKD + "dkd a list")) == "b\nc\n"
    assert ok(server.run(DKD + "dkd a.c.d")) == "- 1\n- !!binary |\n  eg==\n"
    ok(server.run(DKD + "dkd a.b delete"))
    res = server.run(DKD + "dkd a.b")
    assert res.returncode == 1 and res.stderr.strip() == "NoDataError: a.b has no value"
    ok(server.run(DKD + "dkd a delete -r"))
    assert ok(server.run(DKD + "dkd a list")) == ""
    # chains: get -c prints the chain; set --chain with a stale chain fails
    out = ok(server.run(DKD + "dkd x set -e : 1 && dkd x get -c 1"))
    assert "chain:" in out and "test1" in out
    res = server.run(DKD + "dkd x set --new -e : 2")
    assert res.returncode == 1 and res.stderr.startswith("ClientChainError: ")


def test_errors_are_one_line(server):
    server.start("-i", "Testing")
    for cmd, start in [
        ("dkd a..b", "PathError: "),
        ("dkd a set -e : 'not python('", "ValueTypeError: cannot evaluate"),
        ("dkd a frobnicate", "distkv client data: unknown action"),
    ]:
        res = server.run(DKD + cmd)
        assert res.returncode != 0, cmd
        assert res.stderr.startswith(start), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    server.stop()
    res = server.run("distkv client data :")
    assert res.returncode == 1
    assert res.stderr.startswith("ServerClosedError: cannot connect to DistKV at 127.0.0.1:")


def test_internal_dump(server):
    server.start("-i", "Testing")
    ok(server.run("distkv client auth -m _test user add name=joe"))
    out = ok(server.run("distkv client internal dump :"))
    assert out == "null:\n  auth:\n    _test:\n      user:\n        joe:\n          _: {}\n"


def test_path_syntax_on_the_command_line(server):
    server.start("-i", "Testing")
    ok(
        server.run(
            DKD + "dkd p:123 set -v : int && dkd p.:t set -v : true && "
            "dkd 'p.a:.b:_c' set -v : dotspace && dkd p:xff set -v : hex"
        )
    )
    out = ok(server.run(DKD + "dkd p get -r"))
    paths = [line for line in out.splitlines() if line.startswith("path:")]
    assert paths == ["path: :t", "path: :123", "path: :255", "path: a:.b:_c"]


def test_dump_cfg(server):
    out = ok(server.run("distkv -C server.root=foo dump cfg server.root"))
    assert out == '"foo"\n'
    assert str(server.port) in ok(server.run("distkv dump cfg connect"))


PY_API = """
import trio
from distkv.client import open_client
from distkv.util import P, NotGiven
from distkv.obj import ClientRoot, ClientEntry
from distkv.exceptions import ClientChainError

async def dkv_example():
    async with open_client() as client:
        await client.set(P("one.two.three"), value=("Test", 42, False), chain=None)
        res = await client.get(P("one.two.three"), nchain=2)
        ret = await client.set(P("one.two.three"), value=("Test", res.value[1] + 1, False), chain=res.chain)
        assert res.chain != ret.chain
        try:
            await client.set(P("one.two.three"), value=1, chain=res.chain)
        except ClientChainError:
            print("stale chain refused")
        print((await client.get(P("one.two.three"))).value)

async def watch_example():
    async with open_client() as client:
        async with client.watch(P("one.two"), fetch=True) as watcher:
            n = 0
            async for res in watcher:
                if "path" not in res:
                    print("uptodate")
                    await client.set(P("one.two.four"), 4)
                    await client.delete(P("one.two.four"))
                    continue
                if "value" in res:
                    print(f"{res.path}= {res.value}")
                else:
                    print(f"{res.path}: deleted")
                n += 1
                if n == 3:
                    break

class OneEntry(ClientEntry):
    async def set_value(self, value):
        await super().set_value(value)
        print("mirror", self.subpath, value)

class OneRoot(ClientRoot):
    @classmethod
    def child_type(cls, name):
        return OneEntry

async def mirror_example():
    async with open_client() as client:
        async with client.mirror("one", root_type=OneRoot) as root:
            assert root["two"]["three"].value[1] >= 42
            print("mirrored", root["two"]["three"].value)

trio.run(dkv_example)
trio.run(watch_example)
trio.run(mirror_example)
"""


def test_python_api(server):
    server.start("-i", "Testing")
    script = server.tmp / "api.py"
    script.write_text(PY_API)
    out = ok(server.run(f"{sys.executable} {script}"))
    assert out.splitlines() == [
        "stale chain refused",
        "['Test', 43, False]",
        "three= ['Test', 43, False]",
        "uptodate",
        "four= 4",
        "four: deleted",
        "mirror two.three ['Test', 43, False]",
        "mirrored ['Test', 43, False]",
    ]


def test_cli_watch(server):
    server.start("-i", "Testing")
    with server.spawn("exec distkv client data w watch -f") as proc:
        lines = []
        while "state: uptodate" not in lines:
            lines.append(read_line(proc.stdout).rstrip("\n"))
        assert read_line(proc.stdout) == "---\n"
        ok(server.run(DKD + "dkd w.x set -e : 5"))
        doc = []
        while (line := read_line(proc.stdout).rstrip("\n")) != "---":
            doc.append(line)
        assert doc == ["path: x", "value: 5"]
        proc.stdout.close()
