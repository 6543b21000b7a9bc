"""Runners: execute code stored in the tree, on any node, on one node, or in a group.

A runner is a client program (``distkv client run [-n NODE | -g GROUP] all``). It
follows its job set, the jobs' states and (for ``any`` and groups) the heartbeats of
the other runners of the set, and starts what :func:`distkv.core.runner.plan` says is
due and its own. Every decision is in that pure function; this module only watches,
sleeps, runs code and writes states, heartbeats and errors.

Stored code is the body of an ``async`` function. It sees the job's ``data`` items as
global variables, plus ``client`` (this runner's DistKV client, for ``await
client.get(...)``), ``info`` (job path, runner name, target), and ``trio``, ``P``,
``Path``, ``NotGiven`` without importing them; a runner that owns this host's hardware
(``run all --hw``) also gives them ``hw`` (:class:`hw.host.Hardware`: ``hw.gpio``,
``hw.onewire``). ``print`` goes to the runner's output. The return value is stored
in the job's state (``result``).

Errors (code that raises, code that is missing or does not compile) are stored under
``.distkv error RUNNER ID`` = ``{path, message, time, count}`` and logged as a
warning on ``distkv.errors``; the record is removed when the job next succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..core.path import P, Path
from ..core.runner import (
    CODE_ROOT,
    ERROR_ROOT,
    RUN_ROOT,
    RUNNER_ROOT,
    STATE_ROOT,
    Job,
    live_runners,
    plan,
)
from ..core.script import compile_script, describe_error, with_globals
from ..core.types import NotGiven
from ..exceptions import DistKVError, ScriptError
from ..wire import codec

logger = logging.getLogger(__name__)
error_log = logging.getLogger("distkv.errors")

__all__ = ["Runner", "error_id", "job_roots"]


def job_roots(node: str | None = None, group: str | None = None) -> tuple[Path, Path, Path | None]:
    """(jobs, states, heartbeats) roots of a job set; no heartbeats for a node's set."""
    if node is not None:
        sel: tuple = ("node", node)
        hb = None
    elif group is not None:
        sel = ("group", group)
        hb = Path(*RUNNER_ROOT, *sel)
    else:
        sel = ("any",)
        hb = Path(*RUNNER_ROOT, *sel)
    return Path(*RUN_ROOT, *sel), Path(*STATE_ROOT, *sel), hb


def error_id(path: tuple) -> int:
    """A stable small number per failing path, so a recurring error is one record."""
    return int.from_bytes(hashlib.blake2b(repr(tuple(path)).encode(), digest_size=3).digest())


def _storable(result: Any) -> Any:
    try:
        codec.packb(result)
    except (TypeError, ValueError, OverflowError):
        return repr(result)
    return result


class Runner:
    """One runner process's worth of work for one job set."""

    def __init__(
        self,
        client: Any,
        *,
        node: str | None = None,
        group: str | None = None,
        name: str | None = None,
        heartbeat: float = 1.0,
        stale: float | None = None,
        clock: Callable[[], float] = time.time,
        hw: Any = None,
    ):
        self.client = client
        self.hw = hw  # this host's hardware (hw.host.Hardware), for jobs as ``hw``
        self.name = name or node or socket.gethostname()
        self.jobs_root, self.state_root, self.hb_root = job_roots(node, group)
        # A node's runner does not share its jobs (no rendezvous), but it says that it
        # is alive, so a job pinned to a host whose runner is down shows it.
        self.alive_root = self.hb_root or (Path(*RUNNER_ROOT, "node", node) if node else None)
        self.heartbeat = heartbeat
        self.stale = stale if stale is not None else 3.5 * heartbeat
        self.clock = clock
        self.jobs: dict[tuple, Job] = {}
        self.states: dict[tuple, Mapping] = {}
        # states of the jobs every runner of the set runs ("all"): one per runner
        self.own_root = Path(*STATE_ROOT, "every", self.name, *self.state_root[2:])
        self.own_states: dict[tuple, Mapping] = {}
        self.heartbeats: dict[str, Any] = {}
        self.running: dict[tuple, trio.CancelScope] = {}
        self.errors: dict[tuple, int] = {}  # job path -> failures in a row
        self._finished: dict[tuple, float] = {}  # job path -> start of our last run
        self._ok: set[tuple] = set()  # jobs that succeeded since this runner started
        self._changed = trio.Event()
        self.started_jobs = 0

    # --- following the tree

    async def _follow(self, root: Path, apply: Callable, *, task_status=trio.TASK_STATUS_IGNORED):
        async with self.client.watch(root, fetch=True) as w:
            async for m in w:
                if m.get("state") == "uptodate":
                    task_status.started()
                    continue
                apply(tuple(m.path), m.get("value", NotGiven))
                self._changed.set()

    def _on_job(self, rel: tuple, value: Any) -> None:
        if value is NotGiven:
            self.jobs.pop(rel, None)
            scope = self.running.get(rel)
            if scope is not None:
                scope.cancel()  # the job was deleted while it ran
            return
        job = Job.from_value(rel, value)
        if job is None:
            self.jobs.pop(rel, None)
            logger.error("job %s is malformed: %r", self.jobs_root + rel, value)
        else:
            self.jobs[rel] = job

    def _on_state(self, rel: tuple, value: Any, states: dict | None = None) -> None:
        states = self.states if states is None else states
        if value is NotGiven or not isinstance(value, Mapping):
            states.pop(rel, None)
            return
        if (
            value.get("stopped") is None
            and value.get("runner") == self.name
            and self._finished.get(rel) == value.get("started")
        ):
            return  # the late echo of our own "started", for a run that has ended
        states[rel] = value

    def _on_own_state(self, rel: tuple, value: Any) -> None:
        self._on_state(rel, value, self.own_states)

    def _on_heartbeat(self, rel: tuple, value: Any) -> None:
        if len(rel) != 1:
            return
        if value is NotGiven:
            self.heartbeats.pop(rel[0], None)
        else:
            self.heartbeats[rel[0]] = value

    # --- the loops

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started()`` once jobs are being started."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._follow, self.jobs_root, self._on_job)
            await nursery.start(self._follow, self.state_root, self._on_state)
            await nursery.start(self._follow, self.own_root, self._on_own_state)
            if self.hb_root is not None:
                await nursery.start(self._follow, self.hb_root, self._on_heartbeat)
            if self.alive_root is not None:
                await self._beat()
                nursery.start_soon(self._heartbeats)
            if self.hb_root is not None:
                # hear from the other runners before deciding who does what
                await trio.sleep(self.heartbeat * 1.5)
            task_status.started()
            try:
                await self._schedule(nursery)
            finally:
                if self.alive_root is not None:
                    with trio.move_on_after(2, shield=True):
                        # leave at once, so the others take over without waiting
                        # (best effort: the connection may be what ended us)
                        try:
                            await self.client.delete(self.alive_root + (self.name,))
                        except DistKVError:
                            pass

    async def _beat(self) -> None:
        await self.client.set(self.alive_root + (self.name,), {"seen": self.clock()})

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            await self._beat()

    async def _schedule(self, nursery: trio.Nursery) -> None:
        while True:
            now = self.clock()
            runners = None
            if self.hb_root is not None:
                runners = live_runners(self.heartbeats, now, self.stale)
            start, wake = plan(
                self.jobs.values(),
                self.states,
                now,
                self.name,
                runners,
                self.running,
                self.own_states,
            )
            for job in start:
                scope = trio.CancelScope()
                self.running[job.path] = scope
                nursery.start_soon(self._run, job, scope)
            delay = math.inf if wake is None else max(wake - now, 0.0)
            if runners is not None:
                delay = min(delay, self.heartbeat)  # ownership moves when peers go stale
            with trio.move_on_after(delay):
                await self._changed.wait()
            self._changed = trio.Event()

    # --- one job

    async def _run(self, job: Job, scope: trio.CancelScope) -> None:
        path = self.jobs_root + job.path
        state_path = (self.own_root if job.every else self.state_root) + job.path
        states = self.own_states if job.every else self.states
        state: dict[str, Any] = {
            "started": self.clock(),
            "stopped": None,
            "runner": self.name,
            "target": job.target,
        }
        self.started_jobs += 1
        try:
            with scope:
                try:
                    fn = await self._load(job)
                    states[job.path] = state
                    await self.client.set(state_path, state)
                    data = {
                        k: v for k, v in (job.data or {}).items() if not str(k).startswith("__")
                    }
                    fn = with_globals(fn, {**self._names, **data, **self._extra(job)})
                    result = await fn()
                except Exception as exc:  # noqa: BLE001 - stored code may raise anything
                    state = {**state, "stopped": self.clock(), "error": describe_error(exc)}
                    states[job.path] = state
                    await self.client.set(state_path, state)
                    await self._error(path, job, exc)
                else:
                    state = {**state, "stopped": self.clock(), "result": _storable(result)}
                    states[job.path] = state
                    await self.client.set(state_path, state)
                    # the first success after our start also clears a record an
                    # earlier run of this runner left behind
                    if self.errors.pop(job.path, None) is not None or job.path not in self._ok:
                        self._ok.add(job.path)
                        await self.client.delete(Path(*ERROR_ROOT, self.name, error_id(path)))
        finally:
            self._finished[job.path] = state["started"]
            self.running.pop(job.path, None)
            self._changed.set()

    # what stored code can use without importing it
    _names = {"trio": trio, "P": P, "Path": Path, "NotGiven": NotGiven}

    def _extra(self, job: Job) -> dict:
        info = {"path": self.jobs_root + job.path, "runner": self.name, "target": job.target}
        extra = {"client": self.client, "info": info}
        if self.hw is not None:
            extra["hw"] = self.hw
        return extra

    async def _load(self, job: Job):
        cpath = Path(*CODE_ROOT, *job.code)
        res = await self.client.get(cpath)
        value = res.get("value")
        if not isinstance(value, Mapping) or "code" not in value:
            raise ScriptError(f"there is no code at {cpath}")
        return compile_script(value["code"], f"code {cpath}", params=(), is_async=True)

    async def _error(self, path: Path, job: Job, exc: BaseException) -> None:
        n = self.errors[job.path] = self.errors.get(job.path, 0) + 1
        epath = Path(*ERROR_ROOT, self.name, error_id(path))
        message = describe_error(exc)
        error_log.warning("Error %s %s: %s", epath, self.name, message)
        if not isinstance(exc, DistKVError):
            logger.debug("job %s failed", path, exc_info=exc)
        record = {"path": path, "message": message, "time": self.clock(), "count": n}
        await self.client.set(epath, record)
