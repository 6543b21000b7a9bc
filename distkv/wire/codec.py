"""msgpack encoding shared by client, server, bus and storage.

Paths travel as ext type 2 (a msgpack array of their elements) so they stay paths,
not lists, across the wire. Tuples inside path elements come back as tuples; tuples
inside values come back as lists (msgpack has one array type).
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..core.path import Path

EXT_PATH = 2

# The largest message a peer may send; larger ones are a protocol error.
MAX_MESSAGE = 4 * 1024 * 1024


_pack_elements = msgpack.Packer(strict_types=False, use_bin_type=True).pack
_ExtType = msgpack.ExtType
_new_tuple = tuple.__new__


def path_ext(path: tuple) -> msgpack.ExtType:
    """The ext object a path (any tuple of valid elements) is packed as.

    Built without ``ExtType``'s argument checks (half the cost): this runs for every
    path a client sends, a reply or watch event carries, or the log stores."""
    return _new_tuple(_ExtType, (EXT_PATH, _pack_elements(path)))


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return path_ext(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, int):
        raise TypeError(f"integer {obj} is out of range (-2**63 .. 2**64-1)")
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_PATH:
        return Path.build(msgpack.unpackb(data, use_list=False, raw=False))
    return msgpack.ExtType(code, data)


def packer() -> msgpack.Packer:
    """A packer for one writer (packers are not shareable between tasks mid-pack)."""
    return msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)


def unpacker(
    max_size: int = MAX_MESSAGE, *, max_array: int | None = None, max_ext: int | None = None
) -> msgpack.Unpacker:
    """A streaming unpacker: feed bytes, iterate messages.

    ``max_array`` caps the element count a list or map header may announce (msgpack
    allocates that many slots as soon as it reads the header, so a peer holding a
    message open with nested headers costs nesting x count x 8 bytes); ``max_ext``
    the size of one encoded path. Both default to ``max_size``, msgpack's own bound.
    """
    kw: dict[str, int] = {}
    if max_array is not None:
        kw["max_array_len"] = kw["max_map_len"] = max_array
    if max_ext is not None:
        kw["max_ext_len"] = max_ext
    return msgpack.Unpacker(
        ext_hook=_ext_hook,
        raw=False,
        strict_map_key=False,
        max_buffer_size=max_size,
        **kw,
    )


_packer = packer()


def packb(obj: Any) -> bytes:
    return _packer.pack(obj)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


# ------------------------------------------------------------------ partial messages

#: Elements the open lists and maps of a message still being received may announce
#: beyond the message's size in bytes (see :class:`PartialScan`).
PARTIAL_SLACK = 16384

# msgpack header byte -> (size of the length field, fixed payload bytes) for the
# types whose payload is skipped (strings, binaries, exts, numbers)
_SKIP: dict[int, tuple[int, int]] = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin 8/16/32
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext 8/16/32 (+ type byte)
    0xCA: (0, 4), 0xCB: (0, 8),  # float 32/64
    0xCC: (0, 1), 0xCD: (0, 2), 0xCE: (0, 4), 0xCF: (0, 8),  # uint
    0xD0: (0, 1), 0xD1: (0, 2), 0xD2: (0, 4), 0xD3: (0, 8),  # int
    0xD4: (0, 2), 0xD5: (0, 3), 0xD6: (0, 5), 0xD7: (0, 9), 0xD8: (0, 17),  # fixext
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str 8/16/32
}  # fmt: skip
# container headers: byte -> (size of the count field, is a map)
_CONTAINER = {0xDC: (2, False), 0xDD: (4, False), 0xDE: (2, True), 0xDF: (4, True)}


class PartialScan:
    """What the message a peer has only partly sent makes the decoder hold.

    Why: msgpack's streaming decoder allocates a list or map as soon as it reads the
    header (8 bytes a slot for the count announced), and keeps a half-decoded message
    until the rest arrives. A peer that sends headers only (1,023 nested ones, each
    announcing thousands of elements: a few KB) and then waits held ~30 MB of the
    server per connection. Complete messages are harmless (every element announced
    took at least a byte), so only the message still in progress is watched: this
    scanner reads its headers (skipping strings, binaries and paths by their length),
    resumable across reads, and :attr:`announced` is what the lists and maps still
    open have announced. The caller refuses the message once that exceeds the bytes
    received so far plus :data:`PARTIAL_SLACK`: about 8 bytes held per byte sent.
    Cost: nothing while messages arrive whole; one Python step per header for a
    message split over several reads.
    """

    __slots__ = ("start", "size", "announced", "_stack", "_skip", "_head")

    def __init__(self, start: int):
        self.start = start  # stream offset where the message begins
        self.size = 0  # bytes of it scanned so far
        self.announced = 0  # elements announced by the containers still open
        self._stack: list[list[int]] = []  # [elements still to come, announced]
        self._skip = 0  # payload bytes still to skip
        self._head = b""  # an incomplete header from the previous read

    def too_big(self, limit: int = PARTIAL_SLACK) -> bool:
        return self.announced > self.size + limit

    def feed(self, data: bytes) -> None:
        """Scan the next bytes of the message (never past its end: the caller feeds
        only what the decoder left unfinished)."""
        self.size += len(data)
        if self._head:
            data = self._head + data
            self._head = b""
        i = self._skip
        n = len(data)
        stack = self._stack
        while i < n:
            b = data[i]
            if b <= 0x7F or b >= 0xE0 or 0xC0 <= b <= 0xC3:  # fixint, nil, bool
                i += 1
                count = -1
            elif b <= 0x8F or 0x90 <= b <= 0x9F:  # fixmap, fixarray
                i += 1
                count = b & 0x0F
                is_map = b <= 0x8F
            elif b <= 0xBF:  # fixstr
                i += 1 + (b & 0x1F)
                count = -1
            elif b in _CONTAINER:
                width, is_map = _CONTAINER[b]
                if i + 1 + width > n:
                    break
                count = int.from_bytes(data[i + 1 : i + 1 + width], "big")
                i += 1 + width
            else:
                width, fixed = _SKIP.get(b, (0, 0))
                if i + 1 + width > n:
                    break
                ln = int.from_bytes(data[i + 1 : i + 1 + width], "big") if width else 0
                i += 1 + width + fixed + ln
                count = -1
            if count > 0:
                stack.append([count * 2 if is_map else count, count])
                self.announced += count
                continue
            # an element is complete: close the containers it completes
            while stack:
                top = stack[-1]
                top[0] -= 1
                if top[0]:
                    break
                self.announced -= top[1]
                stack.pop()
        if i > n:
            self._skip = i - n
        else:
            self._skip = 0
            self._head = bytes(data[i:])
