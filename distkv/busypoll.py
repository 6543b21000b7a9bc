"""Adaptive busy-polling of a socket before sleeping in the event loop.

Why: on this project's machines (VMs, small ARM boards) waking a process that sleeps
in ``epoll_wait`` costs about 60 µs, which is most of a loopback round trip: two plain
blocking Python processes ping-pong 11.7k times a second, but 40k times when one side
polls its socket instead of sleeping, 140k when both do (measured here). A
sequential client and its server each pay one wake-up per request.

So a reader that has just been answered quickly polls its socket for a short while
(``budget``, microseconds) before it goes to sleep. It polls *through* trio's scheduler
(one checkpoint per try, ~3 µs), so timers, other sockets and other tasks keep running
while it does: this costs CPU, not fairness. It is adaptive: a poll that times out
switches polling off until the peer again answers within the budget, so an idle
connection or one that talks a few times a second costs nothing; only back-to-back
traffic keeps it on. A budget of 0 disables it (the default on single-CPU machines,
where polling would only steal time from the peer we are waiting for).

The budgets are short (server 50 µs, client 100 µs) because of CPU contention: with a
CPU-bound process beside client and server on two cores, 200 µs on both sides cut
sequential sets from 8.6k/s (no polling) to 3.3k/s, since the poller burns the time
slice its peer needs; 50/100 gives 7.0k there. The client's is longer because a
reply includes the server's work: with a state dir (a log write per request) a
50 µs client budget missed every reply and fell back to sleeping (14k/s instead of
26k/s). Yielding the CPU (``sched_yield``) on every try was measured too: it costs
most of the gain even without contention (8.3k/s), so it is not done.
"""

from __future__ import annotations

import os
import socket
from time import perf_counter

import trio

# A server waits for a client's next request: a tight client loop turns around in
# ~20 µs. A client waits for the server's reply, which may include a log write, ACL
# and type checks (~50 µs): a budget shorter than that would miss every time.
SERVER_BUDGET_US = 50
CLIENT_BUDGET_US = 100


def default_budget_us(client: bool = False) -> int:
    """The budget to use when the configuration says nothing: off on one CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return 0
    return CLIENT_BUDGET_US if client else SERVER_BUDGET_US


class BusyPoller:
    """Receives from ``stream``, first polling ``sock`` (a stdlib socket on the same
    connection) while recent replies came back within the budget."""

    __slots__ = ("sock", "stream", "budget", "hot")

    def __init__(self, sock: socket.socket, stream: trio.abc.ReceiveStream, budget_us: float):
        self.sock = sock
        self.stream = stream
        self.budget = budget_us / 1e6
        self.hot = budget_us > 0

    async def receive_some(self, max_bytes: int, poll: bool = True) -> bytes:
        """``poll=False``: sleep at once this time (the caller knows that waiting
        is better, e.g. to let more work pile up for one batch)."""
        started = perf_counter()
        if self.hot and poll:
            sock = self.sock
            end = started + self.budget
            while True:
                try:
                    return sock.recv(max_bytes, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
                except OSError:
                    break  # let the stream report it the usual way
                if perf_counter() >= end:
                    break
                await trio.lowlevel.checkpoint()
        data = await self.stream.receive_some(max_bytes)
        # hot again only if the peer answered within the budget, counted from the
        # start (a poll that just timed out does not count as a quick answer)
        self.hot = perf_counter() - started < self.budget
        return data
