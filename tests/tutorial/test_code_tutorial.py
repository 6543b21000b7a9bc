"""The tutorial's "Code execution" and "Errors" sections, as printed."""

import socket
import time

import pytest

from distkv.testing.process import ok, read_line
from distkv.testing.wait import eventually_sync

pytestmark = pytest.mark.slow

DKV = 'dkv() { distkv client "$@"; }; '
HOST = socket.gethostname()


def wait_for(server, cmd, text, timeout=20):
    """Run ``cmd`` until its output contains ``text``; returns that output."""

    def output():
        out = ok(server.run(DKV + cmd))
        return out if text in out else None

    return eventually_sync(output, timeout=timeout, what=f"{text!r} from {cmd!r}")


def test_code_execution(server):
    server.start("-i", "Testing")
    ok(server.run(DKV + "dkv code set the.answer", input='print("Forty-Two!")\nreturn 42\n'))
    ok(server.run(DKV + "dkv run set -c the.answer -t 0 a.question"))
    with server.spawn("exec distkv client run all") as runner:
        assert read_line(runner.stdout) == "Forty-Two!\n"
        out = wait_for(server, "dkv run get a.question", "result: 42\n")
    assert f"runner: {HOST}\n" in out

    # it does not run again unless its time is set again
    with server.spawn("exec distkv client run all") as runner:
        ok(server.run(DKV + "dkv run set -c the.answer -t 0 a.question"))
        assert read_line(runner.stdout) == "Forty-Two!\n"

    # the one-node-only runner has its own jobs
    ok(server.run(DKV + "dkv run -n $(hostname) set -c the.answer -t 0 a.question"))
    with server.spawn("exec distkv client run -n $(hostname) all") as runner:
        assert read_line(runner.stdout) == "Forty-Two!\n"
        wait_for(server, "dkv run -n $(hostname) get a.question", "result: 42\n")
    assert ok(server.run(DKV + "dkv run -n $(hostname) list")) == "a.question\n"

    # job data: YAML values, dotted keys nest (like -C); a bad item is a clear error
    ok(server.run(DKV + "dkv run set -c the.answer -d lamp.room=kitchen -d n=3 later"))
    out = ok(server.run(DKV + "dkv run get later"))
    assert "  data:\n    lamp:\n      room: kitchen\n    n: 3\n" in out
    res = server.run(DKV + "dkv run set -c the.answer -d oops later")
    assert res.returncode == 1 and res.stderr == "ConfigError: -d needs key=value, got 'oops'\n"

    # code that does not compile is refused before it is stored
    res = server.run(DKV + "dkv code set bad.code", input="return (\n")
    assert res.returncode == 1
    assert res.stderr.strip() == "ScriptError: code bad.code: '(' was never closed (line 1)"
    assert ok(server.run(DKV + "dkv code list")) == "the.answer\n"


def test_errors(server):
    server.start("-i", "Testing")
    ok(server.run(DKV + "dkv code set the.error", input='raise RuntimeError("Owch")\n'))
    ok(server.run(DKV + "dkv run set -c the.error -t 0 what.me.worry"))
    with server.spawn("exec distkv client run all") as runner:
        line = read_line(runner.stderr)
        wait_for(server, "dkv error list", "Owch")
    assert " WARNING:distkv.errors:Error :.distkv.error." in line
    assert line.endswith(f" {HOST}: RuntimeError: Owch\n")
    tree = f"what:\n  me:\n    worry:\n      _:\n        {HOST}: 'RuntimeError: Owch'\n"
    out = ok(server.run(DKV + "dkv error list -d_"))
    assert out == ".distkv:\n  run:\n    any:\n" + "".join(
        f"      {x}\n" for x in tree.splitlines()
    )
    assert ok(server.run(DKV + "dkv error list -d_ :.distkv.run.any")) == tree
    out = ok(server.run(DKV + "dkv error list -a :.distkv.run.any"))
    assert "count: 1\n" in out and "message: 'RuntimeError: Owch'\n" in out
    assert ok(server.run(DKV + "dkv error list -d_ :.distkv.run.node")) == ""
    ok(server.run(DKV + "dkv error clear"))
    assert ok(server.run(DKV + "dkv error list -d_")) == ""


def test_group_jobs_on_one_or_all_hosts(server):
    """ "a way to designate a subgroup of hosts (like 'all with a 1wire interface') and
    to run a job on any / all of them" """
    server.start("-i", "Testing")
    ok(server.run(DKV + "dkv code set the.answer", input='print("Forty-Two!")\nreturn 42\n'))
    with (
        server.spawn("exec distkv client run -g onewire all -N pi1") as pi1,
        server.spawn("exec distkv client run -g onewire all -N pi2") as pi2,
    ):
        wait_for(server, "dkv data :.distkv.runner.group.onewire list", "pi1\npi2\n")
        ok(server.run(DKV + "dkv run -g onewire set -c the.answer -t 0 --all scan"))
        assert read_line(pi1.stdout) == "Forty-Two!\n"
        assert read_line(pi2.stdout) == "Forty-Two!\n"
        deadline = time.monotonic() + 20
        while (out := ok(server.run(DKV + "dkv run -g onewire get scan"))).count("result: 42") < 2:
            assert time.monotonic() < deadline, out
            time.sleep(0.05)
        assert "pi1:\n" in out and "pi2:\n" in out
