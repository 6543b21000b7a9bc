"""Runners and gateways inside the node's own process (server.services): one Python
process on a small board instead of one per service."""

import pytest
import trio

from distkv.client import open_client
from distkv.testing.process import ServerProcess, ok
from distkv.testing.wait import eventually
from distkv.util import P

pytestmark = pytest.mark.slow

RECORD = 'await client.set(P("done") + (info["path"][-1],), info["runner"])\n'


async def test_a_runner_service_runs_jobs_in_the_node_process(tmp_path):
    srv = ServerProcess(tmp_path, "svc1", cfg={"server": {"services": [
        {"kind": "runner", "name": "inside"}]}})  # fmt: skip
    try:
        assert srv.start("-i", "x") == "Running."
        ok(srv.run("distkv client code set rec", input=RECORD))
        ok(srv.run("distkv client run set -c rec -t 0 a.job"))

        async def done():
            async with open_client(connect={"host": "127.0.0.1", "port": srv.port}) as c:
                return (await c.get(P("done.job"))).get("value")

        assert await eventually(done, timeout=30, what="the job to run") == "inside"
        assert srv.proc.poll() is None  # still the one process
    finally:
        srv.stop()


def test_a_bad_service_is_one_line(tmp_path):
    srv = ServerProcess(tmp_path, "svc2", cfg={"server": {"services": [
        {"kind": "gateway", "gateway": "zwave"}]}})  # fmt: skip
    res = srv.run("distkv server -i x svc2")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "ConfigError: server.services item 0: gateway: 'zwave' is not one of gpio, mqtt, owfs"
    ]
    bad = ServerProcess(tmp_path, "svc3", cfg={"server": {"services": [{"kind": "printer"}]}})
    res = bad.run("distkv server -i x svc3")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "server.services: item 0" in res.stderr and "'printer'" in res.stderr


async def test_a_failing_service_does_not_take_the_node_down(tmp_path):
    # an MQTT gateway pointed at a broker that is not there keeps retrying inside
    srv = ServerProcess(tmp_path, "svc4", cfg={
        "server": {"services": [{"kind": "gateway", "gateway": "mqtt"}]},
        "gateways": {"mqtt": {"uri": "mqtt://127.0.0.1:1", "topic": "home"}}})  # fmt: skip
    try:
        assert srv.start("-i", "x") == "Running."
        await trio.sleep(1)
        assert ok(srv.run("distkv client data :")) == '"x"\n'
    finally:
        srv.stop()


def test_the_node_does_not_load_trio_testing():
    """trio.testing costs ~10 MB of RSS (a third of a node): only tests may load it."""
    import subprocess
    import sys

    code = (
        "import sys, distkv.cli.server, distkv.server.server, distkv.client;"
        "print(sorted(m for m in sys.modules if m.startswith('trio.testing')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
