"""CLI commands run in-process against an in-process server: what the user sees on
stdout/stderr and the exit code. Errors are one line, never a traceback."""

from __future__ import annotations

import pytest

from distkv.cli.main import error_line
from distkv.exceptions import ClientChainError, NoDataError, PermissionDenied
from distkv.testing.cli import cli_config, run_cli
from distkv.testing.server import open_test_server


@pytest.fixture
async def cfg():
    async with open_test_server(init="Hello", tcp=True) as server:
        yield cli_config(server)


async def test_set_then_get(cfg):
    r = await run_cli(["client", "data", "x", "set", "-v", ":", "1"], cfg=cfg)
    assert (r.code, r.out, r.err) == (0, "", "")
    r = await run_cli(["client", "data", "x"], cfg=cfg)
    assert (r.code, r.out) == (0, '"1"\n')
    await run_cli(["client", "data", "set", "-e", "a.b", "3", "x"], cfg=cfg)
    r = await run_cli(["client", "data", "x", "get"], cfg=cfg)
    assert r.out == "a:\n  b: 3\n"


async def test_get_tree_and_list(cfg):
    for k, v in (("one.two", "2"), ("one.three", "3")):
        assert (await run_cli(["client", "data", k, "set", "-e", ":", v], cfg=cfg)).code == 0
    r = await run_cli(["client", "data", "one", "get", "-r", "-d_"], cfg=cfg)
    assert r.out == "three:\n  _: 3\ntwo:\n  _: 2\n"
    r = await run_cli(["client", "data", "one", "list"], cfg=cfg)
    assert sorted(r.out.split()) == ["three", "two"]


async def test_errors_are_one_line(cfg):
    r = await run_cli(["client", "data", "nope"], cfg=cfg)
    assert (r.code, r.err) == (1, "NoDataError: nope has no value\n")
    await run_cli(["client", "data", "x", "set", "-v", ":", "1"], cfg=cfg)
    r = await run_cli(["client", "data", "x", "set", "--new", "-v", ":", "2"], cfg=cfg)
    assert r.code == 1 and r.err.startswith("ClientChainError: ") and r.err.count("\n") == 1
    # a command on the trio client
    r = await run_cli(["client", "code", "get", "nope"], cfg=cfg)
    assert (r.code, r.err) == (1, "NoDataError: no code at nope\n")


async def test_unreachable_server_is_one_line(cfg):
    from distkv.testing.process import free_port

    port = free_port()
    r = await run_cli(["-C", f"connect.port={port}", "client", "data", "x"], cfg=cfg)
    assert r.code == 1
    assert r.err.startswith(f"ServerClosedError: cannot connect to DistKV at 127.0.0.1:{port}")
    assert r.err.count("\n") == 1
    r = await run_cli(["client", "-p", str(port), "acl", "list"], cfg=cfg)  # trio client
    assert r.code == 1 and r.err.startswith("ServerClosedError: ") and r.err.count("\n") == 1


async def test_usage_errors(cfg):
    r = await run_cli(["client", "data", "x", "set"], cfg=cfg)
    assert r.code == 2 and r.err.startswith("set needs a value")
    r = await run_cli(["client", "nosuch"], cfg=cfg)
    assert r.code == 2 and "invalid choice: 'nosuch'" in r.err


def test_exception_groups_print_as_their_errors():
    # trio reports an error raised inside a nursery wrapped in an ExceptionGroup
    one = ExceptionGroup("x", [ExceptionGroup("y", [NoDataError("a has no value")])])
    assert error_line(one) == "NoDataError: a has no value"
    two = ExceptionGroup("x", [ClientChainError("c"), PermissionDenied("p")])
    assert error_line(two) == "ClientChainError: c\nPermissionDenied: p"
    assert error_line(ExceptionGroup("x", [NoDataError("a"), KeyError("bug")])) is None
    assert error_line(KeyError("bug")) is None


async def test_login_with_a(cfg):
    # users and auth switched on through the CLI itself (the trio commands)
    for argv in (
        ["client", "auth", "-m", "password", "user", "add", "name=joe", "password=pw-joe"],
        ["client", "auth", "-m", "password", "init"],
    ):
        r = await run_cli(argv, cfg=cfg)
        assert r.code == 0, r.err
    r = await run_cli(["client", "data", "x"], cfg=cfg)
    assert r.code == 1 and r.err.startswith("ClientAuthRequiredError: ")
    r = await run_cli(["client", "-a", "password name=joe password=wrong", "data", ":"], cfg=cfg)
    assert r.code == 1 and r.err.startswith("AuthFailedError: login failed for joe")
    r = await run_cli(["client", "-a", "password name=joe password=pw-joe", "data", ":"], cfg=cfg)
    assert (r.code, r.out) == (0, '"Hello"\n')


async def test_a_job_pinned_to_a_host_says_whether_its_runner_is_up():
    import trio

    from distkv.client import open_client
    from distkv.client.runner import Runner
    from distkv.testing.wait import eventually

    async with open_test_server(init="Hello", tcp=True) as server:
        cfg = cli_config(server)
        await run_cli(["client", "code", "set", "noop"], cfg=cfg, stdin="pass\n")
        await run_cli(["client", "run", "-n", "pi1", "set", "-c", "noop", "a.job"], cfg=cfg)
        r = await run_cli(["client", "run", "-n", "pi1", "get", "a.job"], cfg=cfg)
        assert "runner: no runner on pi1" in r.out, r.out
        async with open_client(cfg) as c, trio.open_nursery() as nursery:
            await nursery.start(Runner(c, node="pi1", name="r1").serve)

            async def up():
                r = await run_cli(["client", "run", "-n", "pi1", "get", "a.job"], cfg=cfg)
                return "runner: running on pi1" in r.out

            await eventually(up, timeout=10, what="the runner's heartbeat")
            nursery.cancel_scope.cancel()
        r = await run_cli(["client", "run", "-n", "pi1", "get", "a.job"], cfg=cfg)
        assert "runner: no runner on pi1" in r.out  # a clean stop says goodbye


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            ["client", "data", "x", "set", "-e", ":", "on"],
            "ValueTypeError: cannot evaluate 'on': not a Python literal "
            "(text needs quotes, or -v instead of -e)\n",
        ),
        (
            ["client", "data", "x", "set", "-e", ":", "open('/etc/passwd')"],
            "ValueTypeError: cannot evaluate \"open('/etc/passwd')\": not a Python literal "
            "(text needs quotes, or -v instead of -e)\n",
        ),
        (
            ["client", "type", "set", "-g", "foo", "-b", "1", "-s", "/dev/null", "t"],
            "ValueTypeError: cannot evaluate example 'foo': not a Python literal "
            "(text needs quotes: '\"text\"')\n",
        ),
    ],
)
async def test_a_value_that_is_no_literal_says_so(cfg, words, expected):
    """``-e : on`` (text without quotes): the line used to end in ast's ``malformed
    node or string on line 1: <ast.Name object at 0x7f...>``, which names neither the
    problem nor ``-v``. Nothing is stored."""
    r = await run_cli(words, cfg=cfg)
    assert (r.code, r.err) == (1, expected)
    assert (await run_cli(["client", "data", "x"], cfg=cfg)).err.startswith("NoDataError")


@pytest.mark.parametrize(
    ("opt", "expected"),
    [
        (["-r", "-5"], "argument -r/--repeat: the interval must be more than 0 seconds, not -5"),
        (["-r", "0"], "argument -r/--repeat: the interval must be more than 0 seconds, not 0"),
        (["-r", "nan"], "argument -r/--repeat: not a number of seconds: 'nan'"),
        (["-t", "nan"], "argument -t/--time: not a number of seconds: 'nan'"),
    ],
)
async def test_a_job_no_runner_would_run_is_refused(cfg, opt, expected):
    """``run set -r -5`` was stored; every runner then logged 'job ... is malformed'
    and never ran it, while the user saw nothing."""
    r = await run_cli(["client", "code", "set", "c"], cfg=cfg, stdin="return 1\n")
    assert r.code == 0, r.err
    r = await run_cli(["client", "run", "set", "-c", "c", "-t", "0", *opt, "j"], cfg=cfg)
    assert (r.code, r.err) == (2, f"distkv client run set: {expected}\n")
    r = await run_cli(["client", "run", "get", "j"], cfg=cfg)
    assert r.code == 1 and r.err.startswith("NoDataError")  # nothing stored
