"""The tutorial's single state files: dumps (``client log save``), log files
(``client log dest``) and loading any of them (``server -l``).

:func:`write_dump` writes a one-shot dump, :func:`open_log_file` a file that gets the
full state (unless incremental) and then every change, and :func:`load_file` loads any
of them, also several concatenated into a pipe (``server -l <(cat a b c)``). The
format is :mod:`.records`; the state directory is :mod:`.statedir`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterable
from typing import IO, Any

import trio

from ..core.tree import Entry
from ..exceptions import StorageError
from . import records as R
from .files import Appender, LoadReport, read_into, replay_path, write_all

logger = logging.getLogger("distkv.storage.statedir")  # one logger name, as before the split

__all__ = [
    "LogFile",
    "create_log_file",
    "load_file",
    "open_log_file",
    "save_dump",
    "write_dump",
    "write_file",
]


def _dump_frames(entries: Iterable[tuple[Iterable[Any], Entry]]) -> Iterable[bytes]:
    """Framed records of ``entries`` plus the end record (the header is framed apart)."""
    return R.iter_frames(R.dump_records(entries))


def write_dump(
    dest: str | os.PathLike | IO[bytes],
    entries: Iterable[tuple[Iterable[Any], Entry]],
    *,
    node: str | None = None,
    tick: int = 0,
    tock: int = 0,
) -> int:
    """One-shot dump of ``entries`` (``(path, entry)``, e.g. :func:`records.iter_entries`).

    To a path: written to a temp file, fsynced and renamed, so the file is either the
    old one or the complete new one. To a binary file object: just written. Returns
    the number of bytes written. Blocking: the server uses :func:`save_dump`.
    """
    head = R.frame(R.encode_header("dump", node, tick, tock))
    if hasattr(dest, "write"):
        n = len(head)
        dest.write(head)  # type: ignore[union-attr]
        for chunk in _dump_frames(entries):
            dest.write(chunk)  # type: ignore[union-attr]
            n += len(chunk)
        return n
    return write_file(os.fspath(dest), itertools.chain([head], _dump_frames(entries)))  # type: ignore[arg-type]


async def save_dump(
    path: str | os.PathLike,
    entries: Iterable[tuple[Iterable[Any], Entry]],
    *,
    node: str | None = None,
    tick: int = 0,
    tock: int = 0,
) -> int:
    """:func:`write_dump` for a node (``client log save``): the dump is encoded at once
    (no checkpoint: it is the state of one moment), then written, fsynced and renamed
    in a worker thread, so the disk never stalls the node."""
    chunks = [R.frame(R.encode_header("dump", node, tick, tock)), *_dump_frames(entries)]
    return await trio.to_thread.run_sync(write_file, os.fspath(path), chunks)


def write_file(fn: str, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to ``fn`` atomically (temp file, fsync, rename); blocking.
    Returns the bytes written; :class:`StorageError` on failure (``fn`` untouched)."""
    tmp = f"{fn}.tmp{os.getpid()}"
    n = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in chunks:
                write_all(fd, chunk)
                n += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, fn)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(f"cannot write {fn}: {exc}") from exc
    return n


class LogFile(Appender):
    """A ``client log dest`` file: records appended and written out per batch.

    Every :meth:`flush` is one ``os.write`` straight to the OS (no Python buffering), so
    a ``kill -9`` loses nothing that was flushed. Same calls as :class:`StateDir`.

    A node opens one with :func:`create_log_file` and :meth:`start`: the big writes
    (the full state, the fsync on close) run in a worker thread; changes appended
    while the state is being written wait in the batch and follow it.
    """

    def __init__(self, fd: int, path: str, *, fsync: bool = False, held: bool = False):
        """``held``: :meth:`flush` writes nothing until :meth:`start` has written the
        file's beginning."""
        self._fd: int | None = fd
        self.path = path
        self.fsync = fsync
        self._held = held
        self._batch = R.Batch()

    async def start(
        self,
        incremental: bool,
        entries: Iterable[tuple[Iterable[Any], Entry]] | None = None,
        *,
        node: str | None = None,
        tick: int = 0,
        tock: int = 0,
    ) -> None:
        """Write the header and, unless ``incremental``, ``entries`` (the full state).

        They are encoded before the first checkpoint, so the file starts with the
        state as of this call and every change appended after it follows; the
        writing runs in a worker thread. :class:`StorageError` if it fails (the
        caller closes the file)."""
        chunks = [R.frame(R.encode_header("log", node, tick, tock, full=not incremental))]
        if not incremental:
            chunks.extend(_dump_frames(entries if entries is not None else ()))
        fd = self._fd
        try:
            await trio.to_thread.run_sync(_write_chunks, fd, chunks)
        except OSError as exc:
            raise StorageError(f"cannot write log file {self.path}: {exc}") from exc
        self._held = False
        self.flush()

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread (its fsync must not stall the node); the
        caller has stopped appending to this file."""
        if self._fd is not None:
            await trio.to_thread.run_sync(self.close)

    def flush(self) -> int:
        """Write the queued batch (one frame, one ``os.write``)."""
        if self._fd is None:
            raise StorageError(f"log file {self.path} is closed")
        if self._held:
            return 0  # the file's beginning is still being written (start)
        data = self._batch.take()
        if data:
            try:
                write_all(self._fd, data)
                if self.fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot write to {self.path}: {exc}") from exc
        return len(data)

    def close(self) -> None:
        """Flush and close (``client log stop``). Idempotent."""
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        except (OSError, StorageError) as exc:
            logger.warning("log: closing %s: %s", self.path, exc)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_chunks(fd: int, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        write_all(fd, chunk)


def _open_append(fn: str) -> int:
    return os.open(fn, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def create_log_file(path: str | os.PathLike, *, fsync: bool = False) -> LogFile:
    """Open ``path`` for appending (in a worker thread), for a node's ``client log
    dest``: the returned file holds its writes until :meth:`LogFile.start`."""
    fn = os.fspath(path)
    try:
        fd = await trio.to_thread.run_sync(_open_append, fn)
    except OSError as exc:
        raise StorageError(f"cannot open log file {fn}: {exc}") from exc
    return LogFile(fd, fn, fsync=fsync, held=True)


def open_log_file(
    path: str | os.PathLike,
    incremental: bool,
    *,
    entries: Iterable[tuple[Iterable[Any], Entry]] | None = None,
    node: str | None = None,
    tick: int = 0,
    tock: int = 0,
    fsync: bool = False,
) -> LogFile:
    """Open ``path`` for appending changes (``client log dest``).

    Not ``incremental``: ``entries`` (the full state) are written first, so the file
    alone restores the tree. Incremental: only changes from now on; the shell switches
    files synchronously (flush+close the old, open the new, no checkpoint in between),
    so consecutive incremental files have no missing or duplicate records. An existing
    file is appended to; a torn tail in it is skipped when loading. Blocking: a node
    uses :func:`create_log_file` and :meth:`LogFile.start`.
    """
    fn = os.fspath(path)
    try:
        fd = _open_append(fn)
    except OSError as exc:
        raise StorageError(f"cannot open log file {fn}: {exc}") from exc
    lf = LogFile(fd, fn, fsync=fsync)
    try:
        hdr = R.frame(R.encode_header("log", node, tick, tock, full=not incremental))
        write_all(fd, hdr)
        if not incremental:
            for chunk in _dump_frames(entries if entries is not None else ()):
                write_all(fd, chunk)
    except OSError as exc:
        lf.close()
        raise StorageError(f"cannot write log file {fn}: {exc}") from exc
    return lf


def load_file(
    src: str | os.PathLike | IO[bytes],
    replica: Any,
    *,
    strict: bool = False,
) -> LoadReport:
    """Load a dump or log file (or several concatenated, e.g. from a pipe) into ``replica``.

    Records are applied in order; damage is warned about with its offset and skipped
    (the file is not changed: it may be a pipe or someone else's backup). Raises
    :class:`StorageError` only with ``strict=True`` when nothing was usable.
    """
    report = LoadReport()
    rep = R.Replayer(replica.tree)
    dec = R.StreamDecoder()
    if hasattr(src, "read"):
        name = getattr(src, "name", None) or "<stream>"
        read = src.read  # type: ignore[union-attr]
        try:
            read_into(read, dec, rep)
        except OSError as exc:
            report._warn("state: error reading %s at offset %d: %s", name, dec.offset, exc)
    else:
        name = os.fspath(src)  # type: ignore[arg-type]
        try:
            dec = replay_path(name, rep)
        except OSError as exc:
            if strict:
                raise StorageError(f"cannot read state file {name}: {exc}") from exc
            report._warn("state: cannot read %s: %s", name, exc)
    report.files.append(str(name))
    for d in dec.damage:
        report.damage.append((str(name), d))
        report._warn("state: %s: %s", name, d.describe())
    if rep.bad_records:
        report._warn("state: %s: %d undecodable records skipped", name, rep.bad_records)
    report.records = rep.records
    report.bad_records = rep.bad_records
    report.ticks = dict(rep.ticks)
    report.tock = rep.tock
    rep.apply_to(replica)
    if rep.records == 0 and strict:
        raise StorageError(f"state file {name}: no usable records")
    return report
