"""The tutorial's "Persistent storage" section, plus the state directory, with kill -9."""

import random
import subprocess
import sys

import pytest
import yaml

from distkv.testing.process import ServerProcess, ok

pytestmark = pytest.mark.slow

DKD = 'dkd() { distkv client data "$@"; }; '


def test_log_dest_survives_kill_9(server):
    server.start("-i", "Testing")
    ok(server.run(DKD + "dkd before set -e : 1"))
    state = server.tmp / "distkv.20261128.state"
    ok(server.run(f"distkv client log dest {state}"))
    ok(server.run(DKD + "for i in $(seq 50); do dkd after.k$i set -e : $i || exit 1; done"))
    ok(server.run(DKD + "dkd before delete"))
    server.stop(kill=True)
    assert server.start("-l", str(state)) == "Running."
    out = ok(server.run(DKD + "dkd after get -rd_"))
    assert out.count("_: ") == 50
    assert ok(server.run(DKD + "dkd :")) == '"Testing"\n'
    assert server.run(DKD + "dkd before").returncode == 1  # the delete was replayed


def test_incremental_logs_concatenated(server):
    server.start("-i", "Testing")
    full = server.tmp / "a.state"
    inc = server.tmp / "b.state"
    ok(server.run(DKD + "dkd x set -e : 1"))
    ok(server.run(f"distkv client log dest {full}"))
    ok(server.run(DKD + "dkd y set -e : 2"))
    ok(server.run(f"distkv client log dest -i {inc}"))
    ok(server.run(DKD + "dkd z set -e : 3 && dkd x delete"))
    ok(server.run("distkv client log stop"))
    server.stop(kill=True)
    # the tutorial's -l <(cat a b), on a fresh node
    server2 = ServerProcess(server.tmp, "test2")
    start = subprocess.Popen(
        ["bash", "-c", f"exec {sys.executable} -m distkv server -l <(cat {full} {inc}) test2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server2.env,
        text=True,
    )
    try:
        assert start.stdout.readline().strip() == "Running."
        out = ok(server2.run(DKD + "dkd : get -rd_"))
        assert out == "_: Testing\ny:\n  _: 2\nz:\n  _: 3\n"
    finally:
        start.terminate()
        start.wait(5)
        start.stdout.close()
        start.stderr.close()


def test_log_dest_is_restricted(server):
    server.start("-i", "Testing")
    res = server.run("distkv client log dest /etc/evil.state")
    assert res.returncode == 1 and res.stderr.startswith("PermissionDenied: ")


def test_state_dir_kill_9_under_load(tmp_path, request):
    """Every write that was acknowledged before kill -9 is there after a restart,
    and the tick counter continues (never reused)."""
    srv = ServerProcess(tmp_path, "p1")
    request.addfinalizer(lambda: srv.stop(kill=True))  # also when an assert fails
    sd = tmp_path / "state"
    srv.start("-i", "Testing", "--state-dir", str(sd))
    script = tmp_path / "load.py"
    script.write_text(
        """
import sys, trio
from distkv.client import open_client
from distkv.util import P

async def main():
    async with open_client() as c:
        async def writer(w):
            i = 0
            while True:
                i += 1
                await c.set(P(f"load.w{w}.k{i}"), i)
                print(f"{w} {i}", flush=True)
        async with trio.open_nursery() as n:
            for w in range(8):
                n.start_soon(writer, w)
trio.run(main)
"""
    )
    load = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=srv.env
    )
    acked: dict[int, int] = {}
    target = random.randint(300, 900)
    for _ in range(target):
        w, i = map(int, load.stdout.readline().split())
        acked[w] = max(acked.get(w, 0), i)
    srv.stop(kill=True)
    load.kill()
    load.wait(5)
    load.stdout.close()
    tick_before = sum(acked.values())
    srv.start("--state-dir", str(sd))
    out = ok(srv.run("distkv client data load get -r"))
    for w, last in acked.items():
        for i in range(1, last + 1):
            assert f"path: w{w}.k{i}\nvalue: {i}\n" in out, (w, i)
    ok(srv.run("distkv client data after set -e : 1"))
    chain = ok(srv.run("distkv client data after get -c 1"))
    node, tick = yaml.safe_load(chain)["chain"][0]
    assert node == "p1" and tick > tick_before
    srv.stop()
