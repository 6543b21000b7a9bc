"""The tutorial's single state files: dumps (``client log save``), log files
(``client log dest``) and loading any of them (``server -l``).

:func:`write_dump` writes a one-shot dump, :func:`open_log_file` a file that gets the
full state (unless incremental) and then every change, and :func:`load_file` loads any
of them, also several concatenated into a pipe (``server -l <(cat a b c)``). The
format is :mod:`.records`; the state directory is :mod:`.statedir`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from typing import IO, Any

from ..core.tree import Entry
from ..exceptions import StorageError
from . import records as R
from .files import Appender, LoadReport, read_into, replay_path, write_all

logger = logging.getLogger("distkv.storage.statedir")  # one logger name, as before the split

__all__ = ["LogFile", "load_file", "open_log_file", "write_dump"]


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
    the number of bytes written.
    """
    head = R.frame(R.encode_header("dump", node, tick, tock))
    if hasattr(dest, "write"):
        n = len(head)
        dest.write(head)  # type: ignore[union-attr]
        for chunk in _dump_frames(entries):
            dest.write(chunk)  # type: ignore[union-attr]
            n += len(chunk)
        return n
    fn = os.fspath(dest)  # type: ignore[arg-type]
    tmp = f"{fn}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            n = len(head)
            write_all(fd, head)
            for chunk in _dump_frames(entries):
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
    """

    def __init__(self, fd: int, path: str, *, fsync: bool = False):
        self._fd: int | None = fd
        self.path = path
        self.fsync = fsync
        self._batch = R.Batch()

    def flush(self) -> int:
        """Write the queued batch (one frame, one ``os.write``)."""
        if self._fd is None:
            raise StorageError(f"log file {self.path} is closed")
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
    file is appended to; a torn tail in it is skipped when loading.
    """
    fn = os.fspath(path)
    try:
        fd = os.open(fn, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
