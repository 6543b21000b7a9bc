"""Property tests for distkv.core.runner: every due job goes to exactly one live runner,
and rendezvous hashing only moves the jobs of a runner that leaves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.core.runner import Job, owner, plan

NOW = 1000.0

names = st.text(alphabet="abcdefghij-_.é0123456789", min_size=1, max_size=8)
runner_sets = st.lists(names, min_size=1, max_size=6, unique=True)
elements = st.one_of(st.text(max_size=4), st.integers(-1000, 1000), st.booleans())
job_paths = st.lists(elements, min_size=1, max_size=4).map(tuple)
path_lists = st.lists(job_paths, min_size=1, max_size=12, unique=True)


@st.composite
def scenarios(draw):
    """Runners, jobs, states, and what each runner is running: all consistent."""
    runners = draw(runner_sets)
    paths = draw(path_lists)
    jobs, states = [], {}
    due: set[tuple] = set()
    running: dict[str, set[tuple]] = {r: set() for r in runners}
    for p in paths:
        target = draw(st.none() | st.floats(0.0, 2 * NOW, allow_nan=False))
        repeat = draw(st.none() | st.floats(1.0, 500.0, allow_nan=False))
        jobs.append(Job(p, ("code",), target, repeat))
        kind = draw(st.sampled_from(["new", "done", "busy-live", "busy-dead"]))
        if kind == "new" or target is None:
            if target is not None and target <= NOW:
                due.add(p)
        elif kind == "done":
            started = draw(st.floats(0.0, NOW, allow_nan=False))
            ran_for = draw(st.sampled_from([target, target + 1.0]))
            states[p] = {
                "started": started,
                "stopped": started + 1.0,
                "target": ran_for,
                "runner": draw(names),
            }
            if ran_for != target:
                nxt = target
            elif repeat is None:
                nxt = None
            else:
                nxt = max(target, started + repeat)
            if nxt is not None and nxt <= NOW:
                due.add(p)
        elif kind == "busy-live":
            r = draw(st.sampled_from(runners))
            states[p] = {"started": NOW - 1.0, "stopped": None, "target": target, "runner": r}
            running[r].add(p)  # that runner knows it is running this job
        else:  # a runner outside the live set started it and died
            dead = draw(names.filter(lambda n: n not in runners))
            states[p] = {"started": NOW - 1.0, "stopped": None, "target": target, "runner": dead}
            if target <= NOW:
                due.add(p)
    return runners, jobs, states, running, due


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_each_due_job_started_exactly_once(scenario):
    runners, jobs, states, running, due = scenario
    started: list[tuple] = []
    for me in runners:
        start, wake = plan(jobs, states, NOW, me, runners, running[me])
        started.extend(j.path for j in start)
        for j in start:
            assert owner(j.path, runners) == me
        assert wake is None or wake > NOW
    assert len(started) == len(set(started)), "a job was started twice"
    assert set(started) == due


@settings(max_examples=60, deadline=None)
@given(runner_sets, path_lists)
def test_plain_due_jobs_partitioned_among_runners(runners, paths):
    jobs = [Job(p, ("code",), NOW) for p in paths]
    started: list[tuple] = []
    for me in runners:
        # each runner may or may not list itself
        others = [r for r in runners if r != me]
        start, wake = plan(jobs, {}, NOW, me, others)
        assert wake is None
        started.extend(j.path for j in start)
    assert sorted(started, key=repr) == sorted(paths, key=repr)


@settings(max_examples=80, deadline=None)
@given(st.lists(names, min_size=2, max_size=7, unique=True), path_lists, st.data())
def test_removing_runner_moves_only_its_jobs(runners, paths, data):
    gone = data.draw(st.sampled_from(runners))
    rest = [r for r in runners if r != gone]
    for p in paths:
        before = owner(p, runners)
        after = owner(p, rest)
        assert after in rest
        if before != gone:
            assert after == before, (p, before, after)


@settings(max_examples=80, deadline=None)
@given(runner_sets, path_lists, st.data())
def test_owner_independent_of_order(runners, paths, data):
    shuffled = data.draw(st.permutations(runners))
    for p in paths:
        o = owner(p, runners)
        assert o in runners
        assert owner(p, shuffled) == o
        assert owner(p, reversed(runners)) == o
        assert owner(p, set(runners)) == o
