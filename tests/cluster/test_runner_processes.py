"""Runner processes on two real nodes replicating through mosquitto: every any-node
job runs exactly once, both runners get work, and a stopped runner's share moves."""

import contextlib

import pytest
import trio

from distkv.client import open_client
from distkv.testing.mosquitto import find_mosquitto
from distkv.testing.process import ok
from distkv.util import P

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed"),
]

RECORD = 'await client.set(P("done") + (info["path"][-1], info["runner"]), 1)\n'


async def runs(proc, jobs):
    """job -> runners that ran it, once every job has run (else None)."""
    out = {j: [] for j in jobs}
    async with open_client(connect={"host": "127.0.0.1", "port": proc.port}) as c:
        async for r in c.get_tree(P("done")):
            if r.path[0] in out:
                out[r.path[0]].append(r.path[1])
    return out if all(out.values()) else None


async def wait_runs(proc, jobs, timeout=30):
    with trio.fail_after(timeout):
        while (res := await runs(proc, jobs)) is None:
            await trio.sleep(0.1)
    return res


async def test_any_jobs_run_once_across_nodes(broker, nodes):
    one = nodes.make("one", broker)
    two = nodes.make("two", broker)
    await nodes.start("one", "-i", "Testing")
    await nodes.start("two")
    ok(await nodes.run("one", "distkv client code set rec", input=RECORD))
    with contextlib.ExitStack() as stack:
        r1 = stack.enter_context(one.spawn("exec distkv client run all -N r1"))
        stack.enter_context(two.spawn("exec distkv client run all -N r2"))
        jobs = [f"j{i}" for i in range(16)]
        # both runners must be up and know of each other before jobs are due
        with trio.fail_after(20):
            while True:
                res = await nodes.run("two", "distkv client data :.distkv.runner.any list")
                if ok(res).split() == ["r1", "r2"]:
                    break
                await trio.sleep(0.1)
        cmds = " && ".join(f"distkv client run set -c rec -t 0 a.{j}" for j in jobs)
        ok(await nodes.run("one", cmds))
        done = await wait_runs(two, jobs)
        assert all(len(who) == 1 for who in done.values()), done
        assert {w for who in done.values() for w in who} == {"r1", "r2"}

        # r1 goes away: everything set from now on runs on r2
        r1.terminate()
        r1.wait(10)
        more = [f"k{i}" for i in range(8)]
        cmds = " && ".join(f"distkv client run set -c rec -t 0 a.{j}" for j in more)
        ok(await nodes.run("two", cmds))
        done = await wait_runs(one, more)
        assert done == {j: ["r2"] for j in more}
