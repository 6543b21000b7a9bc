"""Waiting in tests: the one place for it.

Prefer an event: :func:`value_becomes` watches the tree instead of polling it. Where
the fact lives in another process or behind a worker thread and nothing can tell us
when it changes, :func:`eventually` polls, always bounded, and says what it waited
for when it gives up.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import trio

from ..core.types import NotGiven


async def eventually(
    check: Callable[[], Any], *, timeout: float = 10, step: float = 0.02, what: str = ""
) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; return that.

    ``timeout`` is in trio time (with the autojump clock, virtual seconds), and the
    number of tries is bounded too, so a test that waits on a worker thread under an
    autojump clock cannot spin for ever."""
    tries = max(100, int(timeout / step) * 10)
    with trio.fail_after(timeout):
        for _ in range(tries):
            res = check()
            if inspect.isawaitable(res):
                res = await res
            if res:
                return res
            await trio.sleep(step)
    raise AssertionError(f"gave up waiting{' for ' + what if what else ''}")


def eventually_sync(
    check: Callable[[], Any], *, timeout: float = 20, step: float = 0.05, what: str = ""
) -> Any:
    """:func:`eventually` for plain (non-trio) tests that drive other processes."""
    deadline = time.monotonic() + timeout
    while True:
        res = check()
        if res:
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting{' for ' + what if what else ''}: {res!r}")
        time.sleep(step)


async def value_becomes(client: Any, path: Any, want: Any = NotGiven, *, timeout: float = 10):
    """Wait, through a watch, until ``path`` holds ``want`` (any value if not given);
    returns the value."""
    with trio.fail_after(timeout):
        async with client.watch(path, fetch=True, max_depth=0) as w:
            async for ev in w:
                if "path" not in ev or "value" not in ev:
                    continue
                if want is NotGiven or ev.value == want:
                    return ev.value
    raise AssertionError(f"the watch on {path} ended")
