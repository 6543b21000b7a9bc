"""The entry tree: every node holds all of it in memory.

Memory matters (a Raspberry Pi holds the whole tree), so an :class:`Entry` has no
``__dict__``, keeps its chain head in two slots instead of a tuple, and gets a children
dict only once it has children. Paths are not stored in entries; walks compute them.

Pure code: no I/O, no clock. The tock of a write is passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import chain as chains
from .path import sort_key
from .types import NotGiven

EMPTY: tuple = ()


TICK_BITS = 40
TICK_MASK = (1 << TICK_BITS) - 1


def _item_key(kv: tuple) -> Any:
    return sort_key(kv[0])


def _with_depth(items: list, d: int) -> Iterator[tuple[Any, Entry, int]]:
    for k, c in items:
        yield k, c, d


class Entry:
    """One node of the tree.

    ``value`` is :data:`NotGiven` for an intermediate entry or a tombstone; a tombstone
    has a chain (``node`` set), an entry that was never written has ``node is None``.
    ``node``/``tick`` are the chain head, ``prev`` the older links.

    ``tock`` and ``tick`` share one int (``stamp = tock << 40 | tick``): one 48-byte
    int instead of two 32-byte ones is 16 bytes less per entry, which is 1.6 MB per
    100,000 entries on a Pi. 2**40 ticks are 35 years at 1,000 writes/s.
    """

    __slots__ = ("value", "stamp", "node", "prev", "children")

    def __init__(self):
        self.value: Any = NotGiven
        self.stamp: int = 0
        self.node: str | None = None
        self.prev: chains.Chain = EMPTY
        self.children: dict | None = None

    @property
    def tick(self) -> int:
        return self.stamp & TICK_MASK

    @tick.setter
    def tick(self, tick: int) -> None:
        if tick >> TICK_BITS:
            raise OverflowError(f"tick {tick} does not fit in {TICK_BITS} bits")
        self.stamp = (self.stamp & ~TICK_MASK) | tick

    @property
    def tock(self) -> int:
        return self.stamp >> TICK_BITS

    @tock.setter
    def tock(self, tock: int) -> None:
        self.stamp = (tock << TICK_BITS) | (self.stamp & TICK_MASK)

    @property
    def chain(self) -> chains.Chain:
        if self.node is None:
            return EMPTY
        return ((self.node, self.tick), *self.prev)

    @property
    def has_value(self) -> bool:
        return self.value is not NotGiven

    @property
    def is_tombstone(self) -> bool:
        return self.value is NotGiven and self.node is not None

    def chain_list(self, n: int) -> list:
        """The first ``n`` links as lists (the wire form)."""
        if self.node is None or n <= 0:
            return []
        out = [[self.node, self.tick]]
        for lk in self.prev[: n - 1]:
            out.append(list(lk))
        return out

    def write(self, value: Any, node: str, tick: int, tock: int) -> None:
        """Record a local write (or delete, with ``value=NotGiven``) by ``node``."""
        if self.node is not None:
            if self.node == node:
                prev = self.prev
            else:
                prev = ((self.node, self.tick), *self.prev)
            if prev and any(lk[0] == node for lk in prev):
                prev = tuple(lk for lk in prev if lk[0] != node)
            self.prev = prev
        if tick >> TICK_BITS:
            raise OverflowError(f"tick {tick} does not fit in {TICK_BITS} bits")
        self.value = value
        self.node = node
        self.stamp = (tock << TICK_BITS) | tick

    def merge(self, value: Any, chain: chains.Chain, tock: int) -> int:
        """Apply a replicated write; returns one of the ``MERGE_*`` codes.

        Order-independent and idempotent: the value with the highest ``(tock, node)``
        wins, the chain becomes the pointwise maximum (see :mod:`.chain`).
        """
        head = chain[0]
        node = self.node
        if node is None:
            self.value, self.tock = value, tock
            self.node, self.tick = head
            self.prev = tuple(chain[1:])
            return MERGE_NEW
        if head[0] == node and not self.prev and len(chain) == 1:
            # The common case, on every replicated write: a path with one writer, whose
            # next write arrives. If it is newer (it is, unless messages crossed), it
            # wins and covers ours: the general code below gives the same, slower.
            stamp = self.stamp
            tick = head[1]
            if tick > stamp & TICK_MASK and tock > stamp >> TICK_BITS:
                if tick >> TICK_BITS:
                    raise OverflowError(f"tick {tick} does not fit in {TICK_BITS} bits")
                self.value = value
                self.stamp = (tock << TICK_BITS) | tick
                return MERGE_TAKEN
        mine = self.chain
        if head == (self.node, self.tick):
            # Same write, but a repair answer or dump carries the sender's *merged*
            # chain, which may hold links we lack: still take the pointwise maximum.
            for lk in chain[1:]:
                if not chains.covers(mine, lk):
                    self.prev = chains.merge(head, mine, chain)[1:]
                    break
            return MERGE_SAME
        they_cover = chains.covers(chain, (self.node, self.tick))
        we_cover = chains.covers(mine, head)
        if (tock, head[0]) > (self.tock, self.node):
            new = chains.merge(head, chain, mine)
            self.value, self.tock = value, tock
            result = MERGE_TAKEN if they_cover else MERGE_CONFLICT_TAKEN
        else:
            new = chains.merge((self.node, self.tick), mine, chain)
            result = MERGE_KEPT if we_cover else MERGE_CONFLICT_KEPT
        self.node, self.tick = new[0]
        self.prev = new[1:]
        return result


MERGE_NEW = 0  # the entry had no history: taken
MERGE_SAME = 1  # exactly this write is already here
MERGE_TAKEN = 2  # a newer write that knew ours: taken
MERGE_KEPT = 3  # an older write we already include: ignored (chain merged)
MERGE_CONFLICT_TAKEN = 4  # concurrent writes, the incoming one won
MERGE_CONFLICT_KEPT = 5  # concurrent writes, ours won


class Tree:
    """The whole tree, addressed by paths (tuples of elements)."""

    __slots__ = ("root",)

    def __init__(self):
        self.root = Entry()

    def lookup(self, path: tuple) -> Entry | None:
        e = self.root
        for k in path:
            ch = e.children
            if ch is None:
                return None
            e = ch.get(k)
            if e is None:
                return None
        return e

    def ensure(self, path: tuple) -> Entry:
        e = self.root
        for k in path:
            ch = e.children
            if ch is None:
                ch = e.children = {}
                n = None
            else:
                n = ch.get(k)
            if n is None:
                n = ch[k] = Entry()
            e = n
        return e

    def walk(
        self,
        path: tuple = (),
        min_depth: int = 0,
        max_depth: int = -1,
        *,
        sort: bool = True,
        only: str | None = None,
        pause: int = 0,
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(relative_path, entry)`` depth-first below ``path`` (inclusive).

        Children are visited in a stable, type-aware order when ``sort`` is true.
        ``only``: ``"values"`` yields only entries with a value, ``"history"`` only
        those with a chain (values and tombstones). ``pause``: after that many entries
        skipped in a row by ``only``, yield ``(None, None)`` so that an async consumer
        can let other tasks run even while nothing is yielded.

        Linear in the size of the subtree: the current path is one list that grows and
        shrinks as the walk goes down and up, and a path tuple is built only for an
        entry that is yielded (a deep chain of intermediate entries used to cost one
        tuple per level per level: 40,000 levels froze a node for seconds). Children
        are listed when their parent is visited, so the tree may change while a
        consumer pauses between items.
        """
        start = self.lookup(path)
        if start is None:
            return
        values = only == "values"
        history = only == "history"
        keys: list = []
        skipped = 0
        # a stack of iterators over (key, entry, depth): a node with 100,000 children
        # is expanded one child at a time, not in one step before the first pause
        stack: list[Iterator[tuple[Any, Entry, int]]] = [iter(((None, start, 0),))]
        top = stack[-1]
        while True:
            nxt = next(top, None)
            if nxt is None:
                stack.pop()
                if not stack:
                    return
                top = stack[-1]
                continue
            k, e, depth = nxt
            if depth:
                del keys[depth - 1 :]
                keys.append(k)
            if depth >= min_depth and not (
                (values and e.value is NotGiven) or (history and e.node is None)
            ):
                yield tuple(keys), e
                skipped = 0
            elif pause:
                skipped += 1
                if skipped >= pause:
                    skipped = 0
                    yield None, None
            ch = e.children
            if ch and (max_depth < 0 or depth < max_depth):
                # a snapshot of the children: the tree may change while we pause
                items = sorted(ch.items(), key=_item_key) if sort else list(ch.items())
                top = _with_depth(items, depth + 1)
                stack.append(top)

    def prune(self, path: tuple) -> None:
        """Drop empty intermediate entries on ``path`` (no value, no chain, no children)."""
        trail = []
        e = self.root
        for k in path:
            if not e.children or k not in e.children:
                return
            trail.append((e, k))
            e = e.children[k]
        for parent, k in reversed(trail):
            child = parent.children[k]
            if child.children or child.node is not None:
                return
            del parent.children[k]
            if not parent.children:
                parent.children = None

    def count(self) -> int:
        n = 0
        stack = [self.root]
        while stack:
            e = stack.pop()
            n += 1
            if e.children:
                stack.extend(e.children.values())
        return n
