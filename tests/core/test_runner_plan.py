"""Runner scheduling (pure; see distkv/core/runner.py): jobs, due times, liveness, plan."""

from __future__ import annotations

import pytest

from distkv.core.runner import Job, due_at, live_runners, owner, plan

NAN = float("nan")


def job(path=("j",), target=100.0, repeat=None, code=("c",)) -> Job:
    return Job(tuple(path), tuple(code), target, repeat)


def owned_by(me: str, others: list[str], n: int = 1, prefix: str = "p") -> list[tuple]:
    """``n`` job paths that ``owner`` gives to ``me`` among ``[me, *others]``."""
    out = []
    for i in range(1000):
        p = (prefix, i)
        if owner(p, [me, *others]) == me:
            out.append(p)
            if len(out) == n:
                return out
    raise AssertionError(f"{me!r} owns too few of 1000 paths among {others!r}")


def not_owned_by(me: str, other: str, n: int = 1) -> list[tuple]:
    return owned_by(other, [me], n, prefix="q")


# --- Job.from_value -------------------------------------------------------------------


def test_from_value_full_job():
    j = Job.from_value(
        ["a", 1], {"code": ["the", "answer"], "target": 1.7e9, "repeat": 60, "data": {"x": 1}}
    )
    assert j == Job(("a", 1), ("the", "answer"), 1.7e9, 60, {"x": 1})
    assert type(j.path) is tuple
    assert type(j.code) is tuple


def test_from_value_minimal_job():
    assert Job.from_value(("a",), {"code": ["x"]}) == Job(("a",), ("x",), None, None, None)


def test_from_value_tuple_code_and_int_target():
    j = Job.from_value(("a",), {"code": ("x", "y"), "target": 5, "repeat": 0.5})
    assert j == Job(("a",), ("x", "y"), 5, 0.5, None)


def test_from_value_explicit_nulls():
    j = Job.from_value(("a",), {"code": ["x"], "target": None, "repeat": None, "data": None})
    assert j == Job(("a",), ("x",), None, None, None)


def test_from_value_non_mapping_data_dropped():
    j = Job.from_value(("a",), {"code": ["x"], "target": 1.0, "data": [1, 2]})
    assert j is not None
    assert j.data is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "code",
        ["code", "x"],
        ("code",),
        {},
        {"target": 1.0},
        {"code": None},
        {"code": "print('Forty-Two!')"},
        {"code": []},
        {"code": ()},
        {"code": {"x": 1}},
        {"code": 7},
        {"code": ["x"], "target": "1.7e9"},
        {"code": ["x"], "target": [1.0]},
        {"code": ["x"], "target": {"t": 1}},
        {"code": ["x"], "target": 1.0, "repeat": 0},
        {"code": ["x"], "target": 1.0, "repeat": 0.0},
        {"code": ["x"], "target": 1.0, "repeat": -5},
        {"code": ["x"], "target": 1.0, "repeat": "60"},
        {"code": ["x"], "target": 1.0, "repeat": [60]},
    ],
)
def test_from_value_rejects_malformed(value):
    assert Job.from_value(("a",), value) is None


def test_from_value_rejects_nan_repeat():
    assert Job.from_value(("a",), {"code": ["x"], "target": 1.0, "repeat": NAN}) is None


def test_from_value_rejects_nan_target():
    assert Job.from_value(("a",), {"code": ["x"], "target": NAN}) is None


def test_from_value_rejects_bool_times():
    assert Job.from_value(("a",), {"code": ["x"], "target": True}) is None
    assert Job.from_value(("a",), {"code": ["x"], "target": 1, "repeat": True}) is None


# --- due_at ---------------------------------------------------------------------------


def test_due_no_target():
    assert due_at(job(target=None), None) is None
    assert due_at(job(target=None, repeat=10), {"started": 1, "stopped": 2}) is None


def test_due_never_ran():
    assert due_at(job(target=100.0), None) == 100.0
    assert due_at(job(target=100.0), {}) == 100.0
    assert due_at(job(target=100.0, repeat=10), None) == 100.0


def test_due_ran_for_this_target_without_repeat():
    st = {"started": 101.0, "stopped": 102.0, "target": 100.0, "runner": "a"}
    assert due_at(job(target=100.0), st) is None


def test_due_ran_with_repeat():
    # next run repeat seconds after the last start
    st = {"started": 150.0, "stopped": 151.0, "target": 100.0}
    assert due_at(job(target=100.0, repeat=30), st) == 180.0
    # ... but never before the target
    st = {"started": 50.0, "stopped": 51.0, "target": 100.0}
    assert due_at(job(target=100.0, repeat=30), st) == 100.0


def test_due_while_running():
    st = {"started": 101.0, "stopped": None, "target": 100.0, "runner": "a"}
    assert due_at(job(target=100.0), st) is None
    assert due_at(job(target=100.0, repeat=5), st) is None
    st = {"started": 101.0, "target": 100.0}  # no "stopped" key at all
    assert due_at(job(target=100.0), st) is None
    # running for an old target: still not due while it runs
    st = {"started": 50.0, "stopped": None, "target": 40.0}
    assert due_at(job(target=100.0), st) is None


def test_due_new_target_after_run():
    st = {"started": 101.0, "stopped": 102.0, "target": 100.0}
    assert due_at(job(target=200.0), st) == 200.0
    # even when the new target lies before the last run
    assert due_at(job(target=50.0), st) == 50.0
    # with repeat, a changed target also counts from the new target
    assert due_at(job(target=200.0, repeat=1000), st) == 200.0


def test_due_state_without_start():
    assert due_at(job(target=100.0), {"target": 100.0, "stopped": 5.0}) == 100.0


# --- live_runners ---------------------------------------------------------------------


def test_live_runners_fresh_and_stale():
    hb = {
        "c": {"seen": 95.0},  # 5 s old
        "a": {"seen": 90.0},  # exactly stale: still live
        "b": {"seen": 89.9},  # too old
        "d": {"seen": 100},  # int, now
        "e": {"seen": 105.0},  # clock ahead: live
    }
    assert live_runners(hb, 100.0, 10.0) == ["a", "c", "d", "e"]


def test_live_runners_ignore_garbage():
    hb = {
        "z": {"seen": 99.0},
        "n": None,
        "s": "seen",
        "l": [99.0],
        "k": {},
        "t": {"seen": "99"},
        "u": {"seen": None},
        "v": {"seen": [99.0]},
        "w": {"seen": NAN},
        "m": {"seen": 99.5, "extra": 1},
    }
    assert live_runners(hb, 100.0, 10.0) == ["m", "z"]


def test_live_runners_sorted_and_empty():
    hb = {n: {"seen": 0} for n in ["delta", "alpha", "charlie", "bravo"]}
    assert live_runners(hb, 1.0, 5.0) == ["alpha", "bravo", "charlie", "delta"]
    assert live_runners(hb, 100.0, 5.0) == []
    assert live_runners({}, 100.0, 5.0) == []


# --- owner ----------------------------------------------------------------------------


def test_owner_basic():
    assert owner(("x",), []) is None
    assert owner(("x",), ["solo"]) == "solo"
    rs = ["a", "b", "c", "d"]
    o = owner(("x", 1), rs)
    assert o in rs
    assert owner(("x", 1), iter(rs)) == o
    assert owner(("x", 1), reversed(rs)) == o


def test_owner_spreads_jobs():
    rs = ["a", "b", "c", "d"]
    got = {owner(("p", i), rs) for i in range(200)}
    assert got == set(rs)


# --- plan -----------------------------------------------------------------------------


def test_plan_starts_due_and_reports_earliest_wake():
    jobs = [
        job(("due",), target=90.0),
        job(("now",), target=100.0),
        job(("later",), target=150.0),
        job(("soon",), target=120.0),
        job(("never",), target=None),
        job(("done",), target=50.0),
    ]
    states = {("done",): {"started": 50.0, "stopped": 51.0, "target": 50.0, "runner": "me"}}
    start, wake = plan(jobs, states, 100.0, "me", None)
    assert [j.path for j in start] == [("due",), ("now",)]
    assert wake == 120.0


def test_plan_nothing_to_do():
    assert plan([], {}, 100.0, "me", None) == ([], None)
    done = {("a",): {"started": 1.0, "stopped": 2.0, "target": 1.0}}
    assert plan([job(("a",), target=1.0)], done, 100.0, "me", None) == ([], None)


def test_plan_repeat_wake():
    j = job(("r",), target=10.0, repeat=60.0)
    states = {("r",): {"started": 70.0, "stopped": 71.0, "target": 10.0, "runner": "me"}}
    assert plan([j], states, 100.0, "me", None) == ([], 130.0)
    assert plan([j], states, 130.0, "me", None) == ([j], None)


def test_plan_skips_running():
    jobs = [job(("a",), 10.0), job(("b",), 10.0), job(("c",), 500.0)]
    start, wake = plan(jobs, {}, 100.0, "me", None, running=[("a",), ("c",)])
    assert start == [jobs[1]]
    assert wake is None  # a running job does not set the wake-up time either


def test_plan_node_set_owns_everything():
    jobs = [job(("p", i), 10.0) for i in range(50)]
    start, wake = plan(jobs, {}, 100.0, "me", None)
    assert start == jobs
    assert wake is None


def test_plan_alone_owns_everything():
    jobs = [job(("p", i), 10.0) for i in range(50)]
    assert plan(jobs, {}, 100.0, "me", []) == (jobs, None)
    assert plan(jobs, {}, 100.0, "me", ["me"]) == (jobs, None)


def test_plan_leaves_live_peers_run_alone():
    (p,) = owned_by("me", ["peer"])
    j = job(p, 10.0)
    st = {p: {"started": 20.0, "stopped": None, "target": 10.0, "runner": "peer"}}
    assert plan([j], st, 100.0, "me", ["peer"]) == ([], None)
    # also in a node's own set
    assert plan([j], st, 100.0, "me", None) == ([], None)


def test_plan_restarts_run_of_dead_runner():
    (p,) = owned_by("me", ["peer"])
    j = job(p, 10.0)
    st = {p: {"started": 20.0, "stopped": None, "target": 10.0, "runner": "gone"}}
    assert plan([j], st, 100.0, "me", ["peer"]) == ([j], None)
    # with repeat, too: it runs now, not repeat seconds after the lost start
    jr = job(p, 10.0, repeat=1000.0)
    assert plan([jr], st, 100.0, "me", ["peer"]) == ([jr], None)


def test_plan_restarts_own_unfinished_run():
    (p,) = owned_by("me", ["peer"])
    j = job(p, 10.0)
    st = {p: {"started": 20.0, "stopped": None, "target": 10.0, "runner": "me"}}
    assert plan([j], st, 100.0, "me", ["peer"]) == ([j], None)
    assert plan([j], st, 100.0, "me", None) == ([j], None)
    # ... unless we know we are still running it
    assert plan([j], st, 100.0, "me", ["peer"], running=[p]) == ([], None)


def test_plan_restart_waits_for_future_target():
    (p,) = owned_by("me", ["peer"])
    j = job(p, 300.0)
    st = {p: {"started": 20.0, "stopped": None, "target": 10.0, "runner": "me"}}
    assert plan([j], st, 100.0, "me", ["peer"]) == ([], 300.0)


def test_plan_dead_runners_job_not_restarted_by_non_owner():
    (p,) = not_owned_by("me", "peer")
    j = job(p, 10.0)
    st = {p: {"started": 20.0, "stopped": None, "target": 10.0, "runner": "gone"}}
    assert plan([j], st, 100.0, "me", ["peer"]) == ([], None)
    assert plan([j], st, 100.0, "peer", ["me"]) == ([j], None)


def test_plan_other_owner_not_started():
    mine = owned_by("me", ["peer"], n=3)
    theirs = not_owned_by("me", "peer", n=3)
    jobs = [job(p, 10.0) for p in theirs + mine]
    start, _ = plan(jobs, {}, 100.0, "me", ["peer"])
    assert {j.path for j in start} == set(mine)
    # a future job of another runner does not wake me
    (t,) = not_owned_by("me", "peer", n=1)
    assert plan([job(t, 500.0)], {}, 100.0, "me", ["peer"]) == ([], None)
    (m,) = owned_by("me", ["peer"], n=1)
    assert plan([job(m, 500.0)], {}, 100.0, "me", ["peer"]) == ([], 500.0)


def test_plan_me_counts_as_live():
    # "me" is missing from the list; it must still be treated as a candidate owner.
    mine = owned_by("me", ["peer"], n=5)
    jobs = [job(p, 10.0) for p in mine]
    assert plan(jobs, {}, 100.0, "me", ["peer"]) == (jobs, None)
    assert plan(jobs, {}, 100.0, "me", ["peer", "me"]) == (jobs, None)
    # the peer agrees that these are mine
    assert plan(jobs, {}, 100.0, "peer", ["me"]) == ([], None)


def test_plan_dead_peer_jobs_move_to_me():
    # jobs of "peer" are mine once "peer" drops out of the live list
    theirs = not_owned_by("me", "peer", n=4)
    jobs = [job(p, 10.0) for p in theirs]
    assert plan(jobs, {}, 100.0, "me", ["peer"]) == ([], None)
    assert plan(jobs, {}, 100.0, "me", []) == (jobs, None)


def test_plan_wake_is_minimum_regardless_of_order():
    jobs = [job(("a",), 300.0), job(("b",), 200.0), job(("c",), 250.0)]
    assert plan(jobs, {}, 100.0, "me", None) == ([], 200.0)
    assert plan(jobs[::-1], {}, 100.0, "me", None) == ([], 200.0)
