"""The file shell of persistence: a state directory, and the tutorial's state files.

All format and replay logic is in :mod:`.records`; this module only opens, writes,
fsyncs, renames and deletes files.

State directory
---------------
::

    snap-00000007.dkv   snapshot: the whole tree as of the start of log 7
    log-00000007.dkv    changes since then, one frame per write batch
    log-00000008.dkv    (a new segment per server start; created on the first write)
    snap-00000007.dkv.tmp  a snapshot being written (removed on open)

Sequence numbers are shared: snapshot N plus logs N, N+1, ... give the current state.
**Load** picks the newest snapshot that is complete and undamaged (falling back to the
previous one if the newest is bad: its logs are still there), replays the logs in order,
and truncates a torn tail with a warning naming the file and offset. Damage followed by
good data is skipped with a warning naming the lost range; records after it are kept.
Nothing on disk makes loading crash: unusable files are warned about, and
:class:`~distkv.exceptions.StorageError` is raised only with ``strict=True`` when files
exist but not a single record could be used.

**Writes**: :meth:`StateDir.append_entry` packs a record into the current batch (a few
µs); :meth:`StateDir.flush` writes the batch with one ``os.write`` (so it is in the OS,
surviving a crash of the process); :meth:`StateDir.commit` flushes and, with
``fsync="always"``, fsyncs in a worker thread. Concurrent commits share one fsync
(group commit). The shell calls ``commit()`` (or ``flush()``) before it acknowledges the
batch's writes. ``fsync="interval"`` fsyncs every ``interval`` seconds *if something was
written* (an idle node causes no disk writes at all); ``"never"`` leaves it to the OS.
A new log segment is created lazily on the first write after start or snapshot.

**Snapshots** (temp file, fsync, rename, fsync dir) are taken by :meth:`StateDir.serve`
when the log written since the last snapshot exceeds ``max(min_log_bytes,
snapshot_factor * last snapshot size)`` (defaults: 4 MiB, 2x). Then the data written
to the card is at most about 1.5x what the log alone would be, and disk use stays
proportional to the live data: after snapshot N is written, every file older than the
previous snapshot P is deleted, so what remains is snapshots P and N plus logs >= P
(P is kept so a damaged snapshot N still leaves P + logs as a fallback). After the very
first snapshot nothing is deleted (the full log is that fallback).

The single state files of the tutorial are in :mod:`.statefiles`; file primitives
shared by both (writing, fsyncing, reading, batching, the load report) in :mod:`.files`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import trio

from ..core.tree import Entry, Tree
from ..exceptions import StorageError
from . import records as R
from .files import Appender, LoadReport, fsync_dir, lock_dir, replay_path, unlock_dir, write_all

logger = logging.getLogger(__name__)

__all__ = ["FsyncPolicy", "StateDir", "open_state_dir"]

FsyncPolicy = Literal["always", "interval", "never"]
_POLICIES = ("always", "interval", "never")
_NAME = re.compile(r"^(snap|log)-(\d{8,})\.dkv$")


class StateDir(Appender):
    """A node's state directory. See the module docstring for the layout and policies.

    Use: ``sd = StateDir(path); sd.load(replica)``; run ``sd.serve(replica)`` in a
    nursery; per write ``sd.append_entry(path, entry)``; per batch ``await sd.commit()``
    before acknowledging; at the end ``await sd.aclose()``. :func:`open_state_dir`
    does all of that but the per-write calls.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fsync: FsyncPolicy = "interval",
        interval: float = 1.0,
        min_log_bytes: int = 4 * 1024 * 1024,
        snapshot_factor: float = 2.0,
        strict: bool = False,
        write: Any = os.write,
    ):
        """``write``: the ``os.write`` to use (tests inject a failing one to play a full
        disk)."""
        if fsync not in _POLICIES:
            raise StorageError(f"fsync policy must be one of {', '.join(_POLICIES)}, not {fsync!r}")
        self.path = os.fspath(path)
        self.fsync = fsync
        self.interval = interval
        self.min_log_bytes = min_log_bytes
        self.snapshot_factor = snapshot_factor
        self.strict = strict
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            # not "[Errno 17] File exists: 'PATH'" for a file where the directory goes
            why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise StorageError(f"cannot create state directory {self.path}: {why}") from exc
        self._lock_fd = lock_dir(self.path)
        self._write = write
        #: bytes a failed flush could not write (kept in order, written first next time)
        self._unwritten = b""
        #: why the last flush failed (None: the directory takes writes)
        self.error: StorageError | None = None

        self._batch = R.Batch()
        self._fd: int | None = None  # current log segment, opened lazily
        self._seq = 0  # sequence number of the current (or next) log segment
        self._base: int | None = None  # newest good snapshot
        self._snap_size = 0
        self._log_bytes = 0  # log bytes since the newest good snapshot
        self._written = 0  # bytes handed to the OS, ever (monotonic)
        self._synced = 0  # of those, durable
        self._dir_dirty = False  # a new file name needs a directory fsync
        self._sync_lock = trio.Lock()
        self._snap_lock = trio.Lock()
        self._snap_wanted: trio.Event | None = None
        self._node: tuple[str, int, int] | None = None  # for segment headers
        self._replica: Any = None
        self.report: LoadReport | None = None
        self.loaded = False
        self.closed = False
        self.snapshots_written = 0
        self.fsyncs = 0

    @property
    def log_bytes(self) -> int:
        """Log bytes written since the newest snapshot: a snapshot is due once this
        exceeds ``max(min_log_bytes, snapshot_factor * last snapshot size)``."""
        return self._log_bytes

    @property
    def unsynced_bytes(self) -> int:
        """Bytes written to the OS but not fsynced yet: what a power cut could lose
        (0 after a commit with ``fsync="always"`` and after :meth:`aclose`)."""
        return self._written - self._synced

    # --- names

    def _file(self, kind: str, seq: int) -> str:
        return os.path.join(self.path, f"{kind}-{seq:08d}.dkv")

    def _scan(self) -> tuple[dict[int, str], dict[int, str]]:
        snaps: dict[int, str] = {}
        logs: dict[int, str] = {}
        for name in os.listdir(self.path):
            if name.endswith(".dkv.tmp"):
                # an interrupted snapshot: never renamed, so never valid
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
                continue
            m = _NAME.match(name)
            if m:
                (snaps if m.group(1) == "snap" else logs)[int(m.group(2))] = name
        return snaps, logs

    # --- load

    def load(self, replica: Any) -> LoadReport:
        """Load snapshot + logs into ``replica`` (its tree should be empty). Synchronous.

        Continues the replica's tick and tock after the highest ones written.
        """
        if self.loaded:
            raise StorageError("state directory already loaded")
        self._replica = replica
        rep_ = LoadReport()
        try:
            snaps, logs = self._scan()
        except OSError as exc:
            raise StorageError(f"cannot read state directory {self.path}: {exc}") from exc
        tree: Tree = replica.tree
        rep = R.Replayer(tree)

        base = None
        for seq in sorted(snaps, reverse=True):
            name = snaps[seq]
            fn = os.path.join(self.path, name)
            try:
                dec = replay_path(fn, rep)
            except OSError as exc:
                rep_._warn("state: cannot read snapshot %s: %s", fn, exc)
                continue
            hdr = rep.headers[0] if rep.headers else {}
            why = None
            if dec.damage:
                why = "; ".join(d.describe() for d in dec.damage)
            elif rep.bad_records:
                why = f"{rep.bad_records} undecodable records"
            elif hdr.get("file") != "snapshot" or rep.ends != 1:
                why = "incomplete (no header or end record)"
            if why is None:
                base = seq
                rep_.snapshot = name
                rep_.files.append(name)
                self._snap_size = os.path.getsize(fn)
                break
            rep_._warn("state: snapshot %s is unusable (%s); trying an older one", fn, why)
            tree.root = Entry()
            rep = R.Replayer(tree)
        if base is None and snaps:
            rep_._warn(
                "state: no usable snapshot in %s; replaying the remaining logs only, "
                "older data may be missing",
                self.path,
            )

        todo = sorted(s for s in logs if base is None or s >= base)
        expect = base if base is not None else (todo[0] if todo else 0)
        for seq in todo:
            if any(s not in snaps for s in range(expect, seq)):
                # a seq without a log is fine if a snapshot took it (no writes between)
                rep_._warn(
                    "state: log segments %d..%d are missing in %s: their changes are lost",
                    expect,
                    seq - 1,
                    self.path,
                )
            expect = seq + 1
            name = logs[seq]
            fn = os.path.join(self.path, name)
            bad = rep.bad_records
            try:
                dec = replay_path(fn, rep)
            except OSError as exc:
                rep_._warn("state: cannot read log %s: %s", fn, exc)
                continue
            rep_.files.append(name)
            self._log_bytes += dec.good_end
            for d in dec.damage:
                rep_.damage.append((name, d))
                if d.torn:
                    rep_._warn("state: %s: %s; truncating it there", fn, d.describe())
                    try:
                        os.truncate(fn, d.start)
                    except OSError as exc:
                        rep_._warn("state: cannot truncate %s: %s", fn, exc)
                else:
                    rep_._warn("state: %s: %s", fn, d.describe())
            if rep.bad_records > bad:
                rep_._warn("state: %s: %d undecodable records skipped", fn, rep.bad_records - bad)

        rep_.records = rep.records
        rep_.bad_records = rep.bad_records
        rep_.ticks = dict(rep.ticks)
        rep_.tock = rep.tock
        rep.apply_to(replica)
        if (snaps or logs) and rep.records == 0:
            msg = f"state: nothing usable in {self.path}"
            if self.strict:
                raise StorageError(msg)
            rep_._warn("%s; starting empty", msg)

        # the next segment: never append to an old one (its tail may have been torn)
        top_log = max(logs, default=-1)
        top_snap = max(snaps, default=0)
        self._seq = max(top_log + 1, top_snap)
        self._base = base
        self.loaded = True
        self.report = rep_
        if self._want_snapshot():
            self._request_snapshot()
        return rep_

    # --- writing

    def flush(self) -> int:
        """Write the queued batch to the OS with one ``os.write``; returns bytes written.

        After this a crash of the process loses nothing; after an fsync (policy) a crash
        of the machine loses nothing. Cheap no-op when nothing is queued.
        """
        if not len(self._batch) and not self._unwritten:
            return 0
        if self.closed:
            raise StorageError("state directory is closed")
        head = self._open_segment() if self._fd is None else b""  # may fail: batch kept
        data = self._batch.take() if len(self._batch) else b""
        if head:
            data = head + data
        if self._unwritten:
            data = self._unwritten + data
        try:
            write_all(self._fd, data, self._write)  # type: ignore[arg-type]
        except OSError as exc:
            # e.g. ENOSPC: keep what did not make it, in order, for the next flush;
            # until one succeeds the node refuses writes (see Server.write)
            self._unwritten = bytes(data[getattr(exc, "written", 0) :])
            err = StorageError(f"cannot write to {self._file('log', self._seq)}: {exc}")
            if self.error is None:
                logger.error("state: %s; refusing writes until it works again", err)
            self.error = err
            raise err from exc
        self._unwritten = b""
        if self.error is not None:
            logger.warning("state: %s takes writes again", self.path)
            self.error = None
        n = len(data)
        self._written += n
        self._log_bytes += n
        if self._want_snapshot():
            self._request_snapshot()
        return n

    def _open_segment(self) -> bytes:
        fn = self._file("log", self._seq)
        try:
            self._fd = os.open(fn, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self.error = StorageError(f"cannot create log segment {fn}: {exc}")
            raise self.error from exc
        self._dir_dirty = True
        r = self._replica
        hdr = (
            R.encode_header("log", r.name, r.tick, r.tock, seq=self._seq)
            if r
            else R.encode_header("log", seq=self._seq)
        )
        return R.frame(hdr)

    async def commit(self) -> None:
        """Flush; with ``fsync="always"`` also make it durable. Call before acks.

        With the other policies this does not reach a checkpoint (it is on the hot
        path); concurrent ``always`` commits share one fsync.
        """
        self.flush()
        if self.fsync == "always" and self._written > self._synced:
            await self._sync()

    async def _sync(self) -> None:
        async with self._sync_lock:
            target = self._written
            if target <= self._synced:
                return
            fd = self._fd
            if fd is not None:
                need_dir = self._dir_dirty
                self._dir_dirty = False
                await trio.to_thread.run_sync(self._fsync_fd, fd, need_dir)
            self._synced = target

    def _fsync_fd(self, fd: int, need_dir: bool) -> None:
        os.fsync(fd)
        self.fsyncs += 1
        if need_dir:
            fsync_dir(self.path)

    # --- snapshots

    def _want_snapshot(self) -> bool:
        return self._log_bytes > max(self.min_log_bytes, self.snapshot_factor * self._snap_size)

    def _request_snapshot(self) -> None:
        if self._snap_wanted is not None:
            self._snap_wanted.set()

    async def snapshot(self, replica: Any) -> str:
        """Write a snapshot of ``replica``, then delete what it makes obsolete.

        The log is rotated first (under the sync lock, so a concurrent commit never
        fsyncs the wrong file); the tree walk then yields to other tasks every few
        thousand entries. Changes made meanwhile land in the new segment, which is
        replayed after the snapshot, so the result is exact. Returns the file name.
        """
        async with self._snap_lock:
            async with self._sync_lock:
                self.flush()
                old = self._fd
                if old is not None or self._base == self._seq:
                    # never overwrite a snapshot: the previous one is the fallback
                    self._fd = None
                    self._seq += 1
                seq = self._seq
                done = self._written
                self._log_bytes = 0
                if old is not None:
                    await trio.to_thread.run_sync(self._fsync_close, old, self._dir_dirty)
                    self._dir_dirty = False
                self._synced = max(self._synced, done)
            final = self._file("snap", seq)
            size = await self._write_snapshot(final, replica, seq)
            prev = self._base
            self._base = seq
            self._snap_size = size
            self.snapshots_written += 1
            self._compact(seq, prev)
            return os.path.basename(final)

    def _fsync_close(self, fd: int, need_dir: bool) -> None:
        try:
            self._fsync_fd(fd, need_dir)
        finally:
            os.close(fd)

    async def _write_snapshot(self, final: str, replica: Any, seq: int) -> int:
        tmp = final + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            head = R.encode_header("snapshot", replica.name, replica.tick, replica.tock, seq=seq)
            total = 0
            for data in R.iter_frames(R.dump_records(R.iter_entries(replica.tree), head=head)):
                write_all(fd, data)
                total += len(data)
                await trio.lowlevel.checkpoint()  # a big tree must not stall the node
            await trio.to_thread.run_sync(os.fsync, fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)
        await trio.to_thread.run_sync(fsync_dir, self.path)
        return total

    def _compact(self, new: int, prev: int | None) -> None:
        """Keep snapshots ``new`` and ``prev`` and logs >= ``prev``; delete the rest."""
        if prev is None:
            return  # the complete log is the fallback for the first snapshot
        snaps, logs = self._scan()
        for seq, name in snaps.items():
            if seq not in (new, prev) and seq < new:
                self._unlink(name)
        for seq, name in logs.items():
            if seq < prev:
                self._unlink(name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.path, name))
        except OSError as exc:
            logger.warning("state: cannot delete %s: %s", name, exc)

    # --- background task, close

    async def serve(self, replica: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic fsync (``interval`` policy) and snapshots when due. Runs forever.

        Sleeps while the node is idle: nothing is written unless something changed.
        """
        self._replica = replica
        self._snap_wanted = trio.Event()
        if self._want_snapshot():
            self._snap_wanted.set()
        async with trio.open_nursery() as nursery:
            if self.fsync == "interval":
                nursery.start_soon(self._interval_sync)
            else:
                nursery.start_soon(self._retry_loop)
            task_status.started()
            while True:
                await self._snap_wanted.wait()
                self._snap_wanted = trio.Event()
                try:
                    await self.snapshot(replica)
                except (OSError, StorageError) as exc:
                    # the log is still intact: keep serving, try again after more writes
                    logger.error("state: snapshot in %s failed: %s", self.path, exc)
                    self._log_bytes = 0

    async def _interval_sync(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self._retry()
            if self._written > self._synced:
                try:
                    await self._sync()
                except OSError as exc:  # ENOSPC, EIO: keep serving reads, say so
                    logger.error("state: fsync in %s failed: %s", self.path, exc)

    async def _retry(self) -> None:
        """While writes are refused, try once in a while whether the disk takes them
        again (space freed): the node recovers without a restart."""
        if self.error is None or self.closed:
            return
        with contextlib.suppress(StorageError):
            self.flush()

    async def _retry_loop(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self._retry()

    async def aclose(self) -> None:
        """Flush, fsync (unless ``fsync="never"``) and close. Idempotent."""
        if self.closed:
            return
        with trio.CancelScope(shield=True):
            try:
                self.flush()
            except StorageError as exc:  # still full: what is not written is lost
                logger.error("state: closing %s with unwritten changes: %s", self.path, exc)
            async with self._sync_lock:
                self.closed = True
                unlock_dir(self._lock_fd)
                fd, self._fd = self._fd, None
                if fd is not None:
                    if self.fsync == "never":
                        os.close(fd)
                    else:
                        await trio.to_thread.run_sync(self._fsync_close, fd, self._dir_dirty)
                self._synced = self._written


@contextlib.asynccontextmanager
async def open_state_dir(
    path: str | os.PathLike,
    replica: Any,
    *,
    fsync: FsyncPolicy = "interval",
    interval: float = 1.0,
    strict: bool = False,
    **kw: Any,
) -> AsyncIterator[StateDir]:
    """Load ``path`` into ``replica`` and keep it up to date; closes on exit.

    The load report is ``sd.report``. Per write call ``sd.append_entry`` and per batch
    ``await sd.commit()`` before acknowledging.
    """
    sd = StateDir(path, fsync=fsync, interval=interval, strict=strict, **kw)
    sd.load(replica)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sd.serve, replica)
            try:
                yield sd
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await sd.aclose()
