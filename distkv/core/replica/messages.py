"""The replication messages, typed, and their wire form (encode/decode in one place).

The replica works with these classes; the bus and the ``sync_dump`` stream carry
msgpack dicts with a ``"type"`` key, in the formats of the package docstring. Only
:func:`encode` and :func:`decode` know that wire form, so mixed versions keep
talking as long as these two do not change.

Tick ranges (``Ranges``) and ``seen`` maps stay in their wire form (lists of
half-open ``[start, end]`` pairs), a snapshot taken when the message was made; the
receiver turns them into :class:`~distkv.core.ticks.TickSet` when it needs one.
Chains are tuples of ``(node, tick)`` links, head first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..types import NotGiven

__all__ = [
    "ENTRY",
    "PRESENCE",
    "REPAIR",
    "SUPERSEDED",
    "SYNC",
    "SYNC_END",
    "UPDATE",
    "Entry",
    "Message",
    "Presence",
    "Repair",
    "Superseded",
    "SyncEnd",
    "SyncHeader",
    "Update",
    "as_chain",
    "decode",
    "encode",
]

UPDATE = "update"
PRESENCE = "presence"
REPAIR = "repair"
ENTRY = "entry"
SUPERSEDED = "superseded"
SYNC = "sync"
SYNC_END = "sync_end"

Chain = tuple
Ranges = list  # [[start, end], ...], half-open
Seen = dict  # {origin: Ranges}


def as_chain(c: Iterable) -> Chain:
    """A chain from the wire (lists) as the tuple of tuples that Entry.merge compares."""
    if type(c) is list and len(c) == 1:  # most chains from the wire: one writer
        ((n, t),) = c
        return ((n, t),)
    return tuple([(n, t) for n, t in c])


@dataclass(slots=True)
class Update:
    """A write (``value`` NotGiven: a delete) broadcast by its origin ``node``.

    ``node``/``tick`` equal ``chain[0]``; ``prev`` (0: none) is the origin's previous
    tick at this path, now superseded, so receivers need no repair when it was lost."""

    path: tuple
    value: Any
    chain: Chain
    tock: int
    node: str
    tick: int
    prev: int = 0


@dataclass(slots=True)
class Presence:
    """A node's heartbeat (``online``) or its last will (not ``online``: only ``node``
    is meaningful). ``tock``/``seen``/``horizon`` None: not announced."""

    node: str
    online: bool = True
    ready: bool = True
    syncing: bool = False
    tick: int = 0
    tock: int | None = None
    seen: Seen | None = None
    horizon: dict | None = None


@dataclass(slots=True)
class Repair:
    """``node`` asks ``to`` for ``origin``'s ticks in ``ranges``; ``horizon`` is the
    requester's purge horizon (None: not sent)."""

    to: str
    node: str
    origin: str
    ranges: Ranges
    horizon: dict | None = None


@dataclass(slots=True)
class Entry:
    """An entry's current state: an answer to a repair (``to`` the requester) or a
    record of a dump (``to`` None)."""

    path: tuple
    value: Any
    chain: Chain
    tock: int
    to: str | None = None


@dataclass(slots=True)
class Superseded:
    """Ticks of ``origin`` that the responder ``node`` has seen but that are in no
    chain any more; ``horizon`` is its purge horizon for ``origin``."""

    to: str
    node: str
    origin: str
    ranges: Ranges
    horizon: int = 0


@dataclass(slots=True)
class SyncHeader:
    """First record of a dump: the source's counters and bookkeeping."""

    node: str
    tick: int = 0
    tock: int = 0
    seen: Seen | None = None
    horizon: dict | None = None


@dataclass(slots=True)
class SyncEnd:
    """Last record of a dump."""

    node: str


Message = Update | Presence | Repair | Entry | Superseded | SyncHeader | SyncEnd


def _wire_chain(c: Chain) -> list:
    """A chain as msgpack takes it without a detour: the codec packs tuples through
    a Python callback, one call per tuple (two for a chain of one link), and every
    write and every repair answer sends a chain."""
    if len(c) == 1:
        ((n, t),) = c
        return [[n, t]]
    return [[n, t] for n, t in c]


def encode(m: Message) -> dict:
    """The wire form of a message (see the package docstring for the formats)."""
    cls = type(m)
    if cls is Update:
        d = {"type": UPDATE, "path": m.path}
        if m.value is not NotGiven:
            d["value"] = m.value
        d["chain"] = _wire_chain(m.chain)
        d["tock"] = m.tock
        d["node"] = m.node
        d["tick"] = m.tick
        if m.prev:
            d["prev"] = m.prev
        return d
    if cls is Entry:
        d = {"type": ENTRY, "path": m.path, "chain": _wire_chain(m.chain), "tock": m.tock}
        if m.value is not NotGiven:
            d["value"] = m.value
        if m.to is not None:
            d["to"] = m.to
        return d
    if cls is Presence:
        if not m.online:
            return {"type": PRESENCE, "node": m.node, "online": False}
        d = {"type": PRESENCE, "node": m.node, "online": True, "ready": m.ready,
             "syncing": m.syncing, "tick": m.tick}  # fmt: skip
        if m.tock is not None:
            d["tock"] = m.tock
        if m.seen is not None:
            d["seen"] = m.seen
        if m.horizon is not None:
            d["horizon"] = m.horizon
        return d
    if cls is Repair:
        d = {"type": REPAIR, "to": m.to, "node": m.node, "origin": m.origin, "ranges": m.ranges}
        if m.horizon is not None:
            d["horizon"] = m.horizon
        return d
    if cls is Superseded:
        return {"type": SUPERSEDED, "to": m.to, "node": m.node, "origin": m.origin,
                "ranges": m.ranges, "horizon": m.horizon}  # fmt: skip
    if cls is SyncHeader:
        return {"type": SYNC, "node": m.node, "tick": m.tick, "tock": m.tock,
                "seen": m.seen or {}, "horizon": m.horizon or {}}  # fmt: skip
    if cls is SyncEnd:
        return {"type": SYNC_END, "node": m.node}
    raise TypeError(f"not a replication message: {m!r}")


def decode(d: dict) -> Message | None:
    """A message from its wire form; None for a type this version does not know
    (ignored, so that newer nodes may add some). A missing or mistyped field raises
    KeyError, TypeError or ValueError."""
    typ = d.get("type")
    if typ == UPDATE:
        return Update(d["path"], d.get("value", NotGiven), d["chain"], d["tock"],
                      d["node"], d["tick"], d.get("prev") or 0)  # fmt: skip
    if typ == ENTRY:
        return Entry(d["path"], d.get("value", NotGiven), as_chain(d["chain"]),
                     d["tock"], d.get("to"))  # fmt: skip
    if typ == PRESENCE:
        if not d.get("online", True):
            return Presence(d["node"], online=False, ready=False)
        return Presence(
            d["node"],
            ready=bool(d.get("ready", True)),
            syncing=bool(d.get("syncing", False)),
            tick=d.get("tick", 0),
            tock=d.get("tock"),
            seen=d.get("seen"),
            horizon=d.get("horizon"),
        )
    if typ == REPAIR:
        return Repair(d.get("to"), d["node"], d["origin"], d["ranges"], d.get("horizon"))
    if typ == SUPERSEDED:
        return Superseded(d.get("to"), d.get("node"), d["origin"], d["ranges"],
                          d.get("horizon", 0))  # fmt: skip
    if typ == SYNC:
        return SyncHeader(d.get("node"), d.get("tick", 0), d.get("tock", 0),
                          d.get("seen", {}), d.get("horizon", {}))  # fmt: skip
    if typ == SYNC_END:
        return SyncEnd(d.get("node"))
    return None
