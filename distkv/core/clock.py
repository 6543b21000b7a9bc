"""Hybrid logical clock for tocks.

A tock is ``wall_ms << 16 | counter``: it never goes backwards, rises on every local
change, and is raised past every tock seen from a peer. Ordering writes by tock keeps
causality like a Lamport clock, and across a network split the write made later in
real time wins, which is what a person at a light switch expects.
"""

from __future__ import annotations

SHIFT = 16


def next_tock(last: int, now_ms: int) -> int:
    """The tock for a new local event, given the last tock and the wall clock in ms."""
    t = now_ms << SHIFT
    return t if t > last else last + 1
