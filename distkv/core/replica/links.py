"""Chain links of tree entries: the one place that finds a node's link in an entry."""

from __future__ import annotations

from .. import tree as trees
from .messages import Entry

__all__ = ["entry_message", "link_tick"]


def link_tick(e: trees.Entry, node: str) -> int:
    """The tick of ``node``'s link in ``e``'s chain, 0 if it has none.

    A chain holds at most one link per node (merging keeps each node's newest), so
    this is *the* write of ``node`` that the entry still reflects. Ticks start at 1.
    """
    if e.node == node:
        return e.tick
    for n, t in e.prev:
        if n == node:
            return t
    return 0


def entry_message(path: tuple, e: trees.Entry, to: str | None) -> Entry:
    """The ``entry`` message for ``e``'s current state (a repair answer or a dump record)."""
    return Entry(path, e.value, e.chain, e.tock, to)
