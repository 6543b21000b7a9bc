"""Runners against a real server (in-process, autojump clock): jobs run once across
runners, on time, again when repeated, elsewhere when their runner dies; errors are
recorded and cleared."""

import pytest
import trio

from distkv.client.runner import Runner
from distkv.core.runner import CODE_ROOT, ERROR_ROOT, RUN_ROOT, STATE_ROOT
from distkv.testing.server import open_memory_client, open_test_server
from distkv.testing.wait import eventually
from distkv.util import P, Path

ANY = Path(*RUN_ROOT, "any")


async def until(pred, timeout=60):
    await eventually(pred, timeout=timeout, step=0.05)


async def store_code(c, name, code):
    await c.set(Path(*CODE_ROOT, *P(name)), {"code": code})


async def state_of(c, *path):
    return (await c.get(Path(*STATE_ROOT, *path))).get("value")


COUNT = """
n = (await client.get(P("count"))).get("value", 0)
await client.set(P("count"), n + 1)
return n + 1
"""


async def test_any_job_runs_once_across_runners_and_repeats(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "count.up", COUNT)
        clock = trio.current_time
        async with trio.open_nursery() as n:
            runners = []
            for name in ("r1", "r2", "r3"):
                rc = await n.start(_client_task, s)
                r = Runner(rc, name=name, clock=clock)
                runners.append(r)
                await n.start(r.serve)
            await c.set(
                ANY + P("count.job"),
                {"code": ["count", "up"], "target": clock() + 1, "repeat": 10},
            )  # fmt: skip
            await until(lambda: _has(c, "count", 3))
            assert sum(r.started_jobs for r in runners) == 3  # one runner at a time
            st = await state_of(c, "any", "count", "job")
            assert st["result"] == 3 and st["runner"] in {"r1", "r2", "r3"}
            # it ran every 10 s (virtual time): started at +1, +11, +21
            n.cancel_scope.cancel()


async def _client_task(s, *, task_status=trio.TASK_STATUS_IGNORED):
    async with open_memory_client(s) as rc:
        task_status.started(rc)
        await trio.sleep_forever()


async def _has(c, path, value):
    return (await c.get(P(path))).get("value") == value


async def test_jobs_of_a_dead_runner_move_to_a_live_one(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "hello", "return info['runner']")
        clock = trio.current_time
        async with trio.open_nursery() as n:
            scopes = {}
            for name in ("r1", "r2"):
                rc = await n.start(_client_task, s)
                r = Runner(rc, name=name, clock=clock)
                scopes[name] = trio.CancelScope()

                async def serve(r=r, scope=scopes[name], *, task_status):
                    with scope:
                        await r.serve(task_status=task_status)

                await n.start(serve)
            # many jobs: both runners get some
            for i in range(20):
                await c.set(ANY + (f"j{i}",), {"code": ["hello"], "target": clock() + 5 + i})
            await until(lambda: _all_done(c, 20))
            ran = {(await state_of(c, "any", f"j{i}"))["runner"] for i in range(20)}
            assert ran == {"r1", "r2"}
            # r2 dies without a goodbye (its heartbeat just stops); its jobs go to r1
            scopes["r2"].cancel()
            await c.delete(Path(*ERROR_ROOT))  # (nothing to see there)
            for i in range(20):
                await c.set(ANY + (f"k{i}",), {"code": ["hello"], "target": clock()})
            await until(lambda: _all_done(c, 20, "k"))
            ran = {(await state_of(c, "any", f"k{i}"))["runner"] for i in range(20)}
            assert ran == {"r1"}
            n.cancel_scope.cancel()


async def _all_done(c, n, prefix="j"):
    for i in range(n):
        st = await state_of(c, "any", f"{prefix}{i}")
        if not st or st.get("stopped") is None:
            return False
    return True


async def test_node_jobs_errors_and_their_clearing(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "flaky", "if not ok: raise RuntimeError('Owch')\nreturn 'fine'")
        node_jobs = Path(*RUN_ROOT, "node", "pi")
        clock = trio.current_time
        async with trio.open_nursery() as n:
            rc = await n.start(_client_task, s)
            await n.start(Runner(rc, node="pi", clock=clock).serve)
            # a job of another node's set is not ours
            await c.set(Path(*RUN_ROOT, "node", "other", "x"), {"code": ["flaky"], "target": 0})
            await c.set(
                node_jobs + ("j",), {"code": ["flaky"], "target": clock(), "data": {"ok": False}}
            )
            await until(lambda: _error_count(c, 1))
            errs = [r async for r in c.get_tree(Path(*ERROR_ROOT))]
            assert errs[0].value["message"] == "RuntimeError: Owch"
            assert errs[0].value["path"] == node_jobs + ("j",)
            st = await state_of(c, "node", "pi", "j")
            assert st["error"] == "RuntimeError: Owch" and st["stopped"] is not None
            # it does not run again by itself (no repeat) ...
            await trio.sleep(30)
            assert (await state_of(c, "node", "pi", "j"))["started"] == st["started"]
            # ... until it is set again; success clears the error record
            await c.set(
                node_jobs + ("j",), {"code": ["flaky"], "target": clock(), "data": {"ok": True}}
            )
            await until(lambda: _error_count(c, 0))
            assert (await state_of(c, "node", "pi", "j"))["result"] == "fine"
            # missing code is an error too, with a message that says so
            await c.set(node_jobs + ("m",), {"code": ["nope"], "target": clock()})
            await until(lambda: _error_count(c, 1))
            errs = [r async for r in c.get_tree(Path(*ERROR_ROOT))]
            assert errs[0].value["message"] == "ScriptError: there is no code at :n.code.nope"
            assert await state_of(c, "node", "other", "x") is None
            n.cancel_scope.cancel()


async def _error_count(c, n):
    return len([r async for r in c.get_tree(Path(*ERROR_ROOT))]) == n


async def test_deleting_a_running_job_stops_it(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "slow", "await trio.sleep(1000)\nreturn 'done'")
        clock = trio.current_time
        async with trio.open_nursery() as n:
            rc = await n.start(_client_task, s)
            r = Runner(rc, name="r1", clock=clock)
            await n.start(r.serve)
            await c.set(ANY + ("s",), {"code": ["slow"], "target": clock()})
            await until(lambda: _running(r))
            await c.delete(ANY + ("s",))
            with trio.fail_after(5):
                while r.running:
                    await trio.sleep(0.01)
            st = await state_of(c, "any", "s")
            assert st.get("result") is None
            n.cancel_scope.cancel()


async def _running(r):
    return bool(r.running)


@pytest.mark.parametrize("bad", [{"code": "not a path"}, {"code": ["x"], "target": "soon"}, 5])
async def test_malformed_jobs_are_skipped(autojump_clock, bad):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "x", "return 1")
        async with trio.open_nursery() as n:
            rc = await n.start(_client_task, s)
            r = Runner(rc, name="r1", clock=trio.current_time)
            await n.start(r.serve)
            await c.set(ANY + ("bad",), bad)
            await c.set(ANY + ("good",), {"code": ["x"], "target": trio.current_time()})
            await until(lambda: _done(c, "good"))
            assert await state_of(c, "any", "bad") is None
            n.cancel_scope.cancel()


async def _done(c, name):
    st = await state_of(c, "any", name)
    return bool(st and st.get("stopped") is not None)


async def test_all_jobs_run_on_every_runner_of_a_group(autojump_clock):
    async with open_test_server(init="Testing") as s, open_memory_client(s) as c:
        await store_code(c, "who", "return info['runner']")
        group = Path(*RUN_ROOT, "group", "onewire")
        clock = trio.current_time
        async with trio.open_nursery() as n:
            runners = []
            for name in ("pi1", "pi2", "pi3"):
                rc = await n.start(_client_task, s)
                r = Runner(rc, group="onewire", name=name, clock=clock)
                runners.append(r)
                await n.start(r.serve)
            await c.set(group + ("scan",), {"code": ["who"], "target": clock(), "all": True})
            await c.set(group + ("once",), {"code": ["who"], "target": clock()})

            async def every_ran():
                for name in ("pi1", "pi2", "pi3"):
                    st = await state_of(c, "every", name, "group", "onewire", "scan")
                    if not st or st.get("result") != name:
                        return False
                return True

            await until(every_ran)
            await until(lambda: _done_group(c))
            # 3 runs of the all-job, 1 of the other
            assert sum(r.started_jobs for r in runners) == 4
            n.cancel_scope.cancel()


async def _done_group(c):
    st = await state_of(c, "group", "onewire", "once")
    return bool(st and st.get("stopped") is not None)
