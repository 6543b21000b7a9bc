"""Version chains: which writes an entry's value descends from.

A chain is a version vector kept as a tuple of ``(node, tick)`` links, newest first, at
most one link per node. The head link names the write that produced the current value.

Replicas converge because :func:`merge` is a join: the value kept is the write with the
highest ``(tock, node)``; the chain is the pointwise maximum of both chains, headed by the
winner's link, the rest in node-name order so every replica builds the identical tuple.
"covers" only decides whether a merge is reported as a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable

Link = tuple[str, int]
Chain = tuple[Link, ...]


def as_dict(chain: Iterable[Link]) -> dict[str, int]:
    return {node: tick for node, tick in chain}


def covers(chain: Iterable[Link], link: Link) -> bool:
    """True if ``chain`` already includes the write ``link`` (or a later one of its node)."""
    node, tick = link
    for n, t in chain:
        if n == node:
            return t >= tick
    return False


def merge(head: Link, a: Iterable[Link], b: Iterable[Link]) -> Chain:
    """Pointwise maximum of two chains, headed by ``head`` (the winning write)."""
    links = as_dict(a)
    for n, t in b:
        if links.get(n, -1) < t:
            links[n] = t
    hn = head[0]
    links[hn] = max(links.get(hn, head[1]), head[1])
    first = (hn, links.pop(hn))
    return (first, *sorted(links.items()))
