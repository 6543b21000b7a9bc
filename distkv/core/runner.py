"""Runner scheduling decisions: which stored jobs a runner starts, and when (pure).

Code lives in the system tree (``:n.code...``), jobs and their bookkeeping below
``.distkv``; a job names stored code and when to run it::

    null code the answer                {"code": "print('Forty-Two!')\\nreturn 42\\n"}
    .distkv run any a question          {"code": ["the", "answer"], "target": 1.7e9,
                                         "repeat": null, "data": {}}
    .distkv run node HOST a question    a job only the runner for node HOST runs
    .distkv run group GROUP a question  a job one runner of GROUP runs
    .distkv state any a question        {"started": t, "stopped": t, "runner": NAME,
                                         "target": the target it ran for, "result": ...}
    .distkv runner any NAME             {"seen": t}: runner NAME is alive (heartbeat)
    .distkv runner group GROUP NAME     the same, per group
    .distkv state every RUNNER any a q  a job with ``all: true`` runs on every runner of
                                        its set; each keeps its own state here

A job is **due** when its ``target`` (a wall-clock time, seconds) has come and it has not
run for that target yet; with ``repeat`` it is due again ``repeat`` seconds after its
last start. It does not run again while it runs.

Who runs an ``any`` (or group) job: every live runner of the set computes the same
answer from the same data, so no election is needed: the job goes to the runner with
the highest rendezvous hash of (runner, job path) among the runners whose heartbeat is
fresh. When a runner dies its jobs move to others after ``stale`` seconds; when the
network is split, each side's runners may run a job (at least once, not exactly once).
A ``node`` job has one runner by definition.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CODE_ROOT",
    "ERROR_ROOT",
    "RUN_ROOT",
    "RUNNER_ROOT",
    "STATE_ROOT",
    "Job",
    "due_at",
    "live_runners",
    "owner",
    "plan",
]

# Code is executable, so it lives in the system tree, where nobody may write unless an
# ACL names it (wildcards never reach there). Jobs, states, heartbeats and errors are
# operational data that runners write, in the data tree's ".distkv" part (as the
# tutorial's error paths show); an ACL on ".distkv.#" lets a runner user do its work.
CODE_ROOT = (None, "code")
RUN_ROOT = (".distkv", "run")
STATE_ROOT = (".distkv", "state")
RUNNER_ROOT = (".distkv", "runner")
ERROR_ROOT = (".distkv", "error")


def _number(x: Any) -> bool:
    """A finite int or float (not a bool: ``True`` is no time; NaN never compares)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Job:
    """A job entry as stored (see module doc); ``path`` is relative to its set."""

    path: tuple
    code: tuple
    target: float | None = None
    repeat: float | None = None
    data: Mapping | None = None
    every: bool = False  # run by every runner of the set, not by one of them

    @classmethod
    def from_value(cls, path: tuple, value: Any) -> Job | None:
        """None if the stored value is not a usable job (the runner reports that)."""
        if not isinstance(value, Mapping):
            return None
        code = value.get("code")
        if not isinstance(code, list | tuple) or not code:
            return None
        target = value.get("target")
        repeat = value.get("repeat")
        data = value.get("data")
        if target is not None and not _number(target):
            return None
        if repeat is not None and (not _number(repeat) or repeat <= 0):
            return None
        every = value.get("all", False)
        if not isinstance(every, bool):
            return None
        data = data if isinstance(data, Mapping) else None
        return cls(tuple(path), tuple(code), target, repeat, data, every)


def due_at(job: Job, state: Mapping | None) -> float | None:
    """When ``job`` is next due (wall-clock seconds), or None if never (again).

    ``state`` is the job's state entry: ``started``/``stopped`` of the last run and the
    ``target`` that run was for.
    """
    if job.target is None:
        return None
    state = state or {}
    started = state.get("started")
    if started is not None and state.get("stopped") is None:
        return None  # running now (or its runner died mid-run: see plan)
    if state.get("target") != job.target or started is None:
        return job.target  # never ran for this target
    if job.repeat is None:
        return None
    return max(job.target, started + job.repeat)


def live_runners(heartbeats: Mapping[str, Any], now: float, stale: float) -> list[str]:
    """Runner names whose heartbeat is at most ``stale`` seconds old, sorted."""
    out = []
    for name, v in heartbeats.items():
        seen = v.get("seen") if isinstance(v, Mapping) else None
        if _number(seen) and now - seen <= stale:
            out.append(name)
    return sorted(out)


def _score(runner: str, path: tuple) -> bytes:
    return hashlib.blake2b(repr((runner, path)).encode(), digest_size=8).digest()


def owner(path: tuple, runners: Iterable[str]) -> str | None:
    """The runner responsible for the job at ``path`` (rendezvous hashing): every
    runner agrees without talking, and only the jobs of a runner that comes or goes
    move."""
    best = None
    best_score = b""
    for r in runners:
        s = _score(r, path)
        if best is None or s > best_score:
            best, best_score = r, s
    return best


def plan(
    jobs: Iterable[Job],
    states: Mapping[tuple, Mapping],
    now: float,
    me: str,
    runners: Iterable[str] | None,
    running: Iterable[tuple] = (),
    own_states: Mapping[tuple, Mapping] | None = None,
) -> tuple[list[Job], float | None]:
    """What runner ``me`` starts now, and when to look again (None: only on a change).

    ``runners``: the live runners of the set (``me`` is assumed live), or None for a
    node's own jobs. ``running``: job paths this runner is running now (not started
    twice, also when their state has not come back yet). ``own_states``: this
    runner's own states of the jobs that every runner runs (``all``).
    """
    peers = None if runners is None else sorted({*runners, me})
    busy = set(running)
    start: list[Job] = []
    wake: float | None = None
    for job in jobs:
        if job.path in busy:
            continue
        if job.every:
            state = (own_states or {}).get(job.path)
        elif peers is not None and owner(job.path, peers) != me:
            continue
        else:
            state = states.get(job.path)
        if state and state.get("started") is not None and state.get("stopped") is None:
            if state.get("runner") == me:
                # we ran it but never finished (we were restarted): run it again
                state = {**state, "stopped": state["started"], "target": None}
            elif peers is not None and state.get("runner") not in peers:
                state = {**state, "stopped": state["started"], "target": None}
            else:
                continue
        t = due_at(job, state)
        if t is None:
            continue
        if t <= now:
            start.append(job)
        elif wake is None or t < wake:
            wake = t
    return start, wake
