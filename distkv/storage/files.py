"""File primitives shared by the state directory and the single state files.

Writing all bytes of a buffer, fsyncing a directory, the directory lock, reading a
stream of frames into a :class:`~.records.Replayer`, queueing records per batch
(:class:`Appender`) and what a load found (:class:`LoadReport`). Framing itself is
:func:`.records.iter_frames`, one helper for every writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..core.tree import Entry
from ..exceptions import StorageError
from . import records as R

logger = logging.getLogger("distkv.storage.statedir")  # one logger name, as before the split

__all__ = [
    "LOCK_FILE",
    "READ_CHUNK",
    "Appender",
    "LoadReport",
    "fsync_dir",
    "lock_dir",
    "read_into",
    "replay_path",
    "unlock_dir",
    "write_all",
]

READ_CHUNK = 1024 * 1024
# Flush a batch that grows beyond this without waiting for the shell's flush.
AUTO_FLUSH = 4 * R.FRAME_TARGET


@dataclass
class LoadReport:
    """What a load found. ``damage`` lists ``(file name, Damage)``."""

    records: int = 0
    files: list[str] = field(default_factory=list)
    snapshot: str | None = None
    damage: list[tuple[str, R.Damage]] = field(default_factory=list)
    bad_records: int = 0
    ticks: dict[str, int] = field(default_factory=dict)
    tock: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damage and not self.bad_records and not self.problems

    def _warn(self, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        self.problems.append(text)
        logger.warning("%s", text)


def write_all(fd: int, data: bytes | memoryview, write: Any = os.write) -> int:
    """Write all of ``data``; returns the bytes written. An OSError midway carries
    the bytes written before it as ``exc.written`` (a retry must not repeat them)."""
    done = 0
    try:
        n = write(fd, data)
        if n == len(data):  # the usual case: one syscall, no memoryview
            return n
        done = n
        view = memoryview(data)[n:]
        while view:
            n = write(fd, view)
            done += n
            view = view[n:]
    except OSError as exc:
        exc.written = done  # type: ignore[attr-defined]
        raise
    return done


LOCK_FILE = "LOCK"


def lock_dir(path: str) -> int:
    """Take the state directory for this process (a POSIX lock on ``DIR/LOCK``, which
    the OS drops when the process dies): a second server on the same directory would
    delete the first one's snapshot files and damage its state. POSIX locks belong to
    the process, so reopening the directory in the same process (tests, a reload)
    works."""
    import fcntl

    fn = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(fn, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create lock file {fn}: {exc}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        except OSError:
            pid = "?"
        os.close(fd)
        raise StorageError(
            f"state directory {path} is in use by another server (pid {pid})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_dir(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing drops the lock


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_into(read: Any, dec: R.StreamDecoder, rep: R.Replayer) -> None:
    """Feed a whole stream through the decoder into the replayer."""
    payload = rep.payload
    while True:
        data = read(READ_CHUNK)
        if not data:
            break
        for p in dec.feed(data):
            payload(p)
    for p in dec.finish():
        payload(p)


def replay_path(path: str, rep: R.Replayer) -> R.StreamDecoder:
    dec = R.StreamDecoder()
    with open(path, "rb", buffering=0) as f:
        read_into(f.read, dec, rep)
    return dec


class Appender:
    """Record queueing shared by :class:`StateDir` and :class:`LogFile`: records are
    packed into ``_batch`` and written by the subclass's ``flush`` (once per batch, or
    early when the batch grows large)."""

    _batch: R.Batch

    def flush(self) -> int:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def append(self, record: bytes) -> None:
        """Queue a packed record (``records.encode_*``) for the next :meth:`flush`."""
        self._batch.add(record)
        if self._batch.size > AUTO_FLUSH:
            self.flush()

    def append_entry(self, path: Iterable[Any], entry: Entry) -> None:
        """Queue ``entry``'s state after a change (set, delete or merge) at ``path``."""
        self._batch.add_entry(path, entry)
        if self._batch.size > AUTO_FLUSH:
            self.flush()

    def append_purge(self, path: Iterable[Any]) -> None:
        """Queue: the tombstone at ``path`` was purged."""
        self.append(R.encode_purge(path))
