"""The storage record format: encoding, CRC framing, stream decoding and replay.

Pure code: bytes in, bytes out, no files, no clock. :mod:`.statedir` is the thin shell
that moves these bytes to and from disk. The same format is used for the state
directory's log segments and snapshots and for the tutorial's single-file state
(``client log dest FILE``, ``server -l FILE``), so any of them can be loaded anywhere,
also concatenated (``cat a b c``).

Frame
-----
::

    MAGIC (4 bytes, b"DKv\\x01") | length (uint32 LE) | crc (uint32 LE) | payload

``crc = zlib.crc32(payload, length)``: the length seeds the CRC, so a damaged length
field is caught as surely as a damaged payload. ``length`` is 1..:data:`MAX_FRAME`.
A frame holds one *batch*: the msgpack encodings of one or more records, concatenated.
The shell writes one frame per write batch (one ``os.write``), so a batch is atomic:
after a crash it is either wholly there or detected as a torn tail. Snapshots are cut
into frames of about :data:`FRAME_TARGET` bytes.

Records
-------
Each record is one msgpack object (paths are the wire codec's Path ext type):

* ``[path, value, chain, tock]``  the entry at ``path`` now has this value
* ``[path, chain, tock]``          the entry is deleted (a tombstone with this chain)
* ``[path]``                       the entry's history was purged (it is forgotten)
* ``{"kind": "node", "node": name, "tick": n, "tock": t}``  node bookkeeping
* ``{"kind": "header", "file": "snapshot"|"log"|"dump", "version": 1, "node": ...,
  "tick": ..., "tock": ...}``  first record of every file (also bookkeeping)
* ``{"kind": "end", "count": n}``  last record of a snapshot or dump: it is complete

``chain`` is a list of ``[node, tick]`` links, newest first. A change record carries the
entry's state *after* the change (value, full chain, tock), not the incoming update, so
replay simply sets entries in order; the log of a node is its own history, and replaying
any prefix gives exactly the tree as it was after that prefix. Unknown dict kinds are
ignored (forward compatibility); malformed records are counted and skipped.

Ticks are never reused: a node's own writes carry ``(own name, tick)`` as chain head,
and every file starts with a header naming the node's tick, so :class:`Replayer` gives
back the maximum tick written per node (:attr:`Replayer.ticks`).

Damage
------
:class:`StreamDecoder` checks every frame. At a bad frame (wrong magic, bad length, bad
CRC, a zeroed block) it *resynchronises*: it searches for the next magic that starts a
frame with a valid CRC. If it finds one, the bytes in between are reported as a
:class:`Damage` with ``torn=False`` ("records lost at offset X") and decoding carries on,
so good data after a damaged spot is never dropped silently. If nothing valid follows,
the damage is a torn tail (``torn=True``): the stream is good up to ``Damage.start`` and
the shell truncates the file there. (A CRC-valid frame *inside* damaged bytes, e.g. a
state file stored as a value, could be picked up by the resync; the report still names
the damaged range. Detecting damage reliably matters more than that corner case.)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from ..core.path import Path
from ..core.tree import Entry, Tree
from ..core.types import NotGiven
from ..wire import codec

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Batch",
    "Damage",
    "Replayer",
    "StreamDecoder",
    "decode_records",
    "encode_change",
    "encode_end",
    "encode_entry",
    "encode_header",
    "encode_node",
    "encode_purge",
    "frame",
    "frames",
    "iter_entries",
]

FORMAT_VERSION = 1
MAGIC = b"DKv\x01"
_HEADER = struct.Struct("<4sII")
HEADER_SIZE = _HEADER.size
# A frame's payload is at most this long; a larger length field means damage. Values are
# at most codec.MAX_MESSAGE (4 MiB), so one record always fits.
MAX_FRAME = 16 * 1024 * 1024
# Batches longer than this are cut into several frames (snapshots, big write batches).
FRAME_TARGET = 256 * 1024


def _path_ext(path: Iterable[Any]) -> msgpack.ExtType:
    # Done here rather than via codec's default hook so a plain tuple path is stored as a
    # Path too (the tree's walks yield tuples).
    if not isinstance(path, tuple):
        path = tuple(path)
    return codec.path_ext(path)


# ---------------------------------------------------------------------------- encoding


class Encoder:
    """Packs records. One per writer: a msgpack Packer is not shareable mid-pack."""

    __slots__ = ("_pack",)

    def __init__(self):
        self._pack = codec.packer().pack

    def entry(self, path: Iterable[Any], e: Entry) -> bytes:
        """The record for ``e``'s current state (value or tombstone), as the log stores it."""
        if e.node is None:  # never written, or purged
            return self._pack([_path_ext(path)])
        chain = [[e.node, e.tick]]
        if e.prev:
            chain.extend([n, t] for n, t in e.prev)
        if e.value is NotGiven:
            return self._pack([_path_ext(path), chain, e.tock])
        return self._pack([_path_ext(path), e.value, chain, e.tock])

    def change(self, path: Iterable[Any], value: Any, chain: Iterable, tock: int) -> bytes:
        chain = [[n, t] for n, t in chain]
        if not chain:
            raise ValueError("a change record needs a chain")
        if value is NotGiven:
            return self._pack([_path_ext(path), chain, tock])
        return self._pack([_path_ext(path), value, chain, tock])

    def purge(self, path: Iterable[Any]) -> bytes:
        return self._pack([_path_ext(path)])

    def meta(self, kind: str, **fields: Any) -> bytes:
        return self._pack({"kind": kind, **fields})


_enc = Encoder()


def encode_entry(path: Iterable[Any], e: Entry) -> bytes:
    """Record of an entry's state after a change (the shell's per-write call)."""
    return _enc.entry(path, e)


def encode_change(path: Iterable[Any], value: Any, chain: Iterable, tock: int) -> bytes:
    """Record of a change given as parts; ``value=NotGiven`` makes a tombstone."""
    return _enc.change(path, value, chain, tock)


def encode_purge(path: Iterable[Any]) -> bytes:
    """Record that ``path``'s tombstone was purged: replay forgets the entry."""
    return _enc.purge(path)


def encode_node(node: str, tick: int, tock: int) -> bytes:
    """Bookkeeping: ``node`` has used ticks up to ``tick``; the clock is at ``tock``."""
    return _enc.meta("node", node=node, tick=tick, tock=tock)


def encode_header(
    file: str, node: str | None = None, tick: int = 0, tock: int = 0, **extra: Any
) -> bytes:
    """The first record of every file: format version plus node bookkeeping."""
    return _enc.meta(
        "header", file=file, version=FORMAT_VERSION, node=node, tick=tick, tock=tock, **extra
    )


def encode_end(count: int) -> bytes:
    """The trailer of a snapshot or dump: without it, the file is incomplete."""
    return _enc.meta("end", count=count)


def frame(payload: bytes) -> bytes:
    """One frame around ``payload`` (one or more packed records)."""
    n = len(payload)
    if not 0 < n <= MAX_FRAME:
        raise ValueError(f"frame payload of {n} bytes")
    return _HEADER.pack(MAGIC, n, zlib.crc32(payload, n)) + payload


def iter_frames(records: Iterable[bytes], target: int = FRAME_TARGET) -> Iterator[bytes]:
    """Frame packed records, cutting a new frame whenever ``target`` bytes are reached.

    The one framing helper of every writer (log batches, snapshots, dumps, log files):
    a frame is the unit that is checked (CRC) and skipped when damaged, so its size
    bounds what one bad sector costs."""
    part: list[bytes] = []
    size = 0
    for r in records:
        part.append(r)
        size += len(r)
        if size >= target:
            yield frame(b"".join(part))
            part = []
            size = 0
    if part:
        yield frame(b"".join(part))


def frames(records: Iterable[bytes], target: int = FRAME_TARGET) -> bytes:
    """:func:`iter_frames`, joined."""
    return b"".join(iter_frames(records, target))


def dump_records(
    entries: Iterable[tuple[Iterable[Any], Entry]], *, head: bytes | None = None
) -> Iterator[bytes]:
    """The packed records of a whole tree: ``head`` (a header record) if given, one
    record per entry with history, then the end record with their count (which tells
    a complete dump or snapshot from a cut one)."""
    if head is not None:
        yield head
    entry = Encoder().entry
    count = 0
    for path, e in entries:
        if e.node is None:
            continue
        yield entry(path, e)
        count += 1
    yield encode_end(count)


class Batch:
    """Records of one write batch, framed and handed out by :meth:`take`.

    Adding a record only packs it (a few µs); the shell writes the framed batch with one
    ``os.write`` before it acknowledges the batch's writes. That keeps the set hot path
    cheap and makes each batch atomic on disk.
    """

    __slots__ = ("_parts", "_size", "enc")

    def __init__(self):
        self._parts: list[bytes] = []
        self._size = 0
        self.enc = Encoder()

    def __len__(self) -> int:
        return len(self._parts)

    @property
    def size(self) -> int:
        """Bytes of packed records waiting (without frame headers)."""
        return self._size

    def add(self, record: bytes) -> None:
        """Add an already packed record (see the ``encode_*`` functions)."""
        self._parts.append(record)
        self._size += len(record)

    def add_entry(self, path: Iterable[Any], e: Entry) -> None:
        r = self.enc.entry(path, e)
        self._parts.append(r)
        self._size += len(r)

    def take(self) -> bytes:
        """The framed batch (b"" if empty); the batch is empty afterwards."""
        if not self._parts:
            return b""
        parts, self._parts, self._size = self._parts, [], 0
        if len(parts) == 1:
            return frame(parts[0])
        return frames(parts)


def iter_entries(tree: Tree) -> Iterator[tuple[tuple, Entry]]:
    """``(path, entry)`` for every entry with history (values and tombstones).

    Unsorted, unlike :meth:`Tree.walk`: snapshots need speed, not order. Children are
    listed when their parent is visited, so the tree may change between items (a
    snapshot walk yields to other tasks); such changes are in the log written after the
    snapshot started, and replaying that log afterwards fixes them up.
    """
    return tree.walk(sort=False, only="history")


# ---------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Damage:
    """Bytes ``start``..``end`` of a stream are unusable.

    ``torn``: nothing valid follows (``end`` is the end of the stream), so everything
    from ``start`` on is a torn tail to truncate. Otherwise good frames follow at ``end``
    and whatever records were in between are lost: loud warning, keep going.
    """

    start: int
    end: int
    torn: bool

    def describe(self) -> str:
        if self.torn:
            return f"torn tail at offset {self.start} ({self.end - self.start} bytes)"
        return f"damaged data at offset {self.start}..{self.end}: records there are lost"


class StreamDecoder:
    """Incremental frame decoder: ``feed`` bytes, get good payloads, then ``finish``.

    Works on a non-seekable stream (a pipe of concatenated files) because it only ever
    looks forward. Offsets count from the first byte fed. Problems are collected in
    :attr:`damage`; :attr:`good_end` is the offset just past the last good frame.
    """

    def __init__(self, offset: int = 0):
        self._buf = bytearray()
        self._base = offset  # stream offset of _buf[0]
        self._bad: int | None = None  # start of damaged bytes being skipped
        self.damage: list[Damage] = []
        self.good_end = offset
        self.frames = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; returns the payloads of the frames completed by them."""
        if data:
            self._buf += data
        return self._parse(final=False)

    def finish(self) -> list[bytes]:
        """End of stream: returns the last payloads; leftover bytes become :class:`Damage`."""
        out = self._parse(final=True)
        end = self._base + len(self._buf)
        if self._bad is not None:
            self.damage.append(Damage(self._bad, end, True))
            self._bad = None
        self._base = end
        self._buf.clear()
        return out

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed."""
        return self._base

    def _parse(self, final: bool) -> list[bytes]:
        buf = self._buf
        n = len(buf)
        pos = 0
        out: list[bytes] = []
        unpack = _HEADER.unpack_from
        crc32 = zlib.crc32
        while True:
            if self._bad is not None:
                # resync: look for the next magic that starts a valid frame
                q = buf.find(MAGIC, pos)
                if q < 0:
                    # keep the last few bytes: a magic may straddle the next feed
                    pos = max(pos, n - len(MAGIC) + 1)
                    break
                pos = q
            if n - pos < HEADER_SIZE:
                if final and pos < n and self._bad is None:
                    self._bad = self._base + pos
                break
            magic, length, crc = unpack(buf, pos)
            end = pos + HEADER_SIZE + length
            if magic != MAGIC or not 0 < length <= MAX_FRAME:
                ok = False
            elif end > n:
                if not final:
                    break  # wait for more data
                ok = False  # incomplete at the end of the stream
            else:
                payload = bytes(buf[pos + HEADER_SIZE : end])
                ok = crc32(payload, length) == crc
            if not ok:
                if self._bad is None:
                    self._bad = self._base + pos
                pos += 1
                continue
            if self._bad is not None:
                self.damage.append(Damage(self._bad, self._base + pos, False))
                self._bad = None
            out.append(payload)
            self.frames += 1
            pos = end
            self.good_end = self._base + end
        if pos:
            del buf[:pos]
            self._base += pos
        return out


def _unpacker() -> msgpack.Unpacker:
    return codec.unpacker(max_size=MAX_FRAME)


def decode_records(data: bytes) -> tuple[list[Any], list[Damage]]:
    """All records of a complete byte string, plus the damage found (for tools, tests)."""
    dec = StreamDecoder()
    payloads = dec.feed(data)
    payloads += dec.finish()
    unp = _unpacker()
    out: list[Any] = []
    for p in payloads:
        unp.feed(p)
        out.extend(unp)
    return out, dec.damage


# ---------------------------------------------------------------------------- replay


class Replayer:
    """Applies decoded records to a tree, in order.

    Entries are set directly (value, chain, tock): a record is the entry's state after
    the change, so the last record for a path wins and a tombstone record leaves a
    tombstone. Tracks the highest tick per node (:attr:`ticks`) and the highest tock so
    the node continues its tick counter and clock without reusing a tick.
    """

    def __init__(self, tree: Tree):
        self.tree = tree
        self.ticks: dict[str, int] = {}
        self.tock = 0
        self.records = 0
        self.bad_records = 0
        self.headers: list[dict] = []
        self.ends = 0
        self._unp = _unpacker()

    def payload(self, payload: bytes) -> int:
        """Apply every record of one frame; returns how many were applied.

        A CRC-valid but malformed record is skipped; undecodable bytes skip the rest of
        the frame. Both are counted in :attr:`bad_records`.
        """
        unp = self._unp
        unp.feed(payload)
        n = 0
        ensure = self.tree.ensure
        ticks = self.ticks
        try:
            for rec in unp:
                n += 1
                try:
                    if type(rec) is list and len(rec) in (3, 4):
                        if len(rec) == 4:
                            path, value, chain, tock = rec
                        else:
                            path, chain, tock = rec
                            value = NotGiven
                        node, tick = chain[0]
                        if (
                            type(path) is not Path
                            or type(node) is not str
                            or type(tick) is not int
                            or type(tock) is not int
                        ):
                            raise TypeError("malformed change record")
                        prev = tuple((lk[0], lk[1]) for lk in chain[1:]) if len(chain) > 1 else ()
                        e = ensure(path)
                        e.value = value
                        e.tock = tock
                        e.node = node
                        e.tick = tick
                        e.prev = prev
                        if tick > ticks.get(node, 0):
                            ticks[node] = tick
                        if tock > self.tock:
                            self.tock = tock
                    else:
                        self._other(rec)
                except Exception:
                    # a CRC-valid but malformed record (a bug, or a newer format)
                    self.bad_records += 1
        except Exception:
            # undecodable msgpack or an invalid path ext: the rest of the frame is lost
            self.bad_records += 1
            self._unp = _unpacker()
        self.records += n
        return n

    def _other(self, rec: Any) -> None:
        if type(rec) is list and len(rec) == 1 and type(rec[0]) is Path:
            self._purge(rec[0])
            return
        if type(rec) is not dict:
            self.bad_records += 1
            return
        kind = rec.get("kind")
        if kind in ("node", "header"):
            if kind == "header":
                self.headers.append(rec)
            node, tick, tock = rec.get("node"), rec.get("tick"), rec.get("tock")
            if isinstance(node, str) and type(tick) is int and tick > self.ticks.get(node, 0):
                self.ticks[node] = tick
            if type(tock) is int and tock > self.tock:
                self.tock = tock
        elif kind == "end":
            self.ends += 1
        # unknown kinds: written by a newer version, ignored

    def _purge(self, path: Path) -> None:
        e = self.tree.lookup(path)
        if e is None:
            return
        e.value = NotGiven
        e.node = None
        e.tick = 0
        e.tock = 0
        e.prev = ()
        self.tree.prune(path)

    def apply_to(self, replica: Any) -> None:
        """Continue ``replica``'s tick counter and clock after what was replayed."""
        t = self.ticks.get(replica.name, 0)
        if t > replica.tick:
            replica.tick = t
        if self.tock > replica.tock:
            replica.tock = self.tock
