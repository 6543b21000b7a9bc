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
