"""Run a long-lived service (a gateway, an instance) until SIGTERM or Ctrl-C.

The signals are caught from the moment the process is up, also while the service is
still starting: a gateway whose broker is unreachable starts for as long as the broker
stays away, and the process must still stop when systemd (SIGTERM) or the user
(Ctrl-C) says so. Reading the signals only after the start had finished left them
queued in trio's receiver, so such a process ignored both until it was killed.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio


async def serve_until_stopped(start: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """``start(*args, task_status=...)`` in a nursery, ``Running.`` on stdout once it
    has started, then run until SIGTERM or SIGINT, which cancel it (also while it is
    still starting: then nothing is printed)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_first, signals, nursery.cancel_scope)
            await nursery.start(start, *args)
            print("Running.", flush=True)


async def _cancel_on_first(signals, scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return
