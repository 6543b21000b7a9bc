"""The file shell: state directory (log, snapshots, fsync policy) and single state files."""

from __future__ import annotations

import logging
import os

import pytest
import trio

from distkv.core.path import Path
from distkv.core.replica import Replica
from distkv.exceptions import StorageError
from distkv.storage import records as R
from distkv.storage.statedir import StateDir, open_state_dir
from distkv.storage.statefiles import load_file, open_log_file, write_dump
from distkv.testing.wait import eventually


def state(tree) -> list:
    return sorted((repr(p), repr(e.value), e.chain, e.tock) for p, e in R.iter_entries(tree))


def write(sd: StateDir, r: Replica, key, value, now: int = 1000):
    path = Path("x", key)
    e = r.local_write(path, value, now)
    sd.append_entry(path, e)
    return e


def files(d) -> dict[str, tuple[int, int]]:
    return {n: (s.st_size, s.st_mtime_ns) for n in dkv_files(d) if (s := os.stat(d / n))}


def dkv_files(d) -> list[str]:
    """The state files in ``d`` (not the LOCK file)."""
    return sorted(n for n in os.listdir(d) if n != "LOCK")


async def until(cond) -> None:
    """Wait for ``cond()``: with the autojump clock, a task waiting for a worker thread
    (fsync) counts as blocked, so virtual time may pass before the thread is done."""
    await eventually(cond, timeout=100, step=0.001)


def reload(d, **kw) -> tuple[Replica, StateDir]:
    r = Replica("me")
    sd = StateDir(d, **kw)
    sd.load(r)
    return r, sd


async def test_write_close_reload_continues_tick(tmp_path):
    r, sd = reload(tmp_path)
    for i in range(5):
        write(sd, r, i, i)
        await sd.commit()
    write(sd, r, 2, None)
    sd.append_entry(Path("x", 3), r.local_delete(Path("x", 3), 2000))
    await sd.aclose()

    r2, sd2 = reload(tmp_path)
    assert sd2.report.clean
    assert state(r2.tree) == state(r.tree)
    assert r2.tree.lookup(("x", 3)).is_tombstone  # deletion replayed as a tombstone
    assert r2.tree.lookup(("x", 2)).value is None
    assert r2.tick == r.tick == 7 and r2.tock == r.tock
    assert r2.local_write(Path("y"), 1, 1).tick == 8  # never reused


async def test_tick_survives_snapshot_when_own_link_is_superseded(tmp_path):
    r, sd = reload(tmp_path)
    for i in range(3):
        write(sd, r, "k", i)
    e, _ = r.apply_remote(Path("x", "k"), "theirs", (("other", 1), ("me", 3)), r.tock + 1)
    sd.append_entry(Path("x", "k"), e)
    await sd.snapshot(r)
    await sd.snapshot(r)
    await sd.snapshot(r)  # compaction: only snapshots remain, no own chain head
    await sd.aclose()
    assert dkv_files(tmp_path) == ["snap-00000002.dkv", "snap-00000003.dkv"]
    r2, _ = reload(tmp_path)
    assert r2.tree.lookup(("x", "k")).chain == (("other", 1), ("me", 3))
    assert r2.tick == 3


async def test_torn_tail_is_truncated_with_warning(tmp_path, caplog):
    r, sd = reload(tmp_path)
    for i in range(3):
        write(sd, r, i, i)
        sd.flush()
    await sd.aclose()
    log = tmp_path / "log-00000000.dkv"
    good = log.stat().st_size
    whole = R.Batch()
    whole.add_entry(Path("x", 9), r.local_write(Path("x", 9), 9, 5))
    with open(log, "ab") as f:
        f.write(whole.take()[:-5])  # a crash in the middle of a write

    with caplog.at_level(logging.WARNING):
        r2, sd2 = reload(tmp_path)
    msgs = [m for m in caplog.messages if "torn" in m]
    assert len(msgs) == 1 and str(log) in msgs[0] and f"offset {good}" in msgs[0]
    assert log.stat().st_size == good
    assert [e.value for _, e in sorted(R.iter_entries(r2.tree))] == [0, 1, 2]
    assert r2.tick == 3  # the torn write was never acknowledged: its tick is free

    # the next start writes a new segment; everything loads cleanly
    write(sd2, r2, 5, 5)
    await sd2.aclose()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        r3, _ = reload(tmp_path)
    assert caplog.messages == []
    assert state(r3.tree) == state(r2.tree)


async def test_zeroed_block_in_log_keeps_later_records(tmp_path, caplog):
    r, sd = reload(tmp_path)
    log = tmp_path / "log-00000000.dkv"
    ends = []
    for i in range(3):
        write(sd, r, i, i)
        sd.flush()
        ends.append(log.stat().st_size)  # flushed: in the file
    await sd.aclose()
    with open(log, "r+b") as f:
        f.seek(ends[0])
        f.write(b"\0" * (ends[1] - ends[0]))
    with caplog.at_level(logging.WARNING):
        r2, sd2 = reload(tmp_path)
    assert any(f"offset {ends[0]}" in m and "lost" in m for m in caplog.messages)
    assert {p[1]: e.value for p, e in R.iter_entries(r2.tree)} == {0: 0, 2: 2}
    assert log.stat().st_size == ends[2]  # not truncated: good data follows
    assert [d.torn for _, d in sd2.report.damage] == [False]


async def test_corrupt_newest_snapshot_falls_back(tmp_path, caplog):
    r, sd = reload(tmp_path)
    write(sd, r, "a", 1)
    assert await sd.snapshot(r) == "snap-00000001.dkv"
    write(sd, r, "b", 2)
    assert await sd.snapshot(r) == "snap-00000002.dkv"
    write(sd, r, "c", 3)
    write(sd, r, "a", None)
    await sd.aclose()
    # log-0 went with the second snapshot; snapshot 1 and its logs are the fallback
    assert dkv_files(tmp_path) == [
        "log-00000001.dkv",
        "log-00000002.dkv",
        "snap-00000001.dkv",
        "snap-00000002.dkv",
    ]
    snap = tmp_path / "snap-00000002.dkv"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING):
        r2, sd2 = reload(tmp_path)
    assert any(str(snap) in m and "unusable" in m for m in caplog.messages)
    assert sd2.report.snapshot == "snap-00000001.dkv"
    assert state(r2.tree) == state(r.tree)
    assert r2.tick == r.tick


async def test_incomplete_snapshot_is_not_used(tmp_path, caplog):
    r, sd = reload(tmp_path)
    write(sd, r, "a", 1)
    await sd.snapshot(r)
    await sd.aclose()
    snap = tmp_path / "snap-00000001.dkv"
    # cut exactly at a frame boundary: no damage, but no end record either
    data = snap.read_bytes()
    hdr = R.frame(R.encode_header("snapshot", "me", 1, r.tock, seq=1))
    snap.write_bytes(hdr)
    (tmp_path / "snap-00000002.dkv.tmp").write_bytes(data[:10])
    with caplog.at_level(logging.WARNING):
        r2, _ = reload(tmp_path)
    assert any("incomplete" in m for m in caplog.messages)
    assert state(r2.tree) == state(r.tree)  # from log 0
    assert not (tmp_path / "snap-00000002.dkv.tmp").exists()


async def test_compaction_keeps_disk_use_bounded(tmp_path):
    r, sd = reload(tmp_path, min_log_bytes=2000)
    for round_ in range(6):
        for i in range(50):
            write(sd, r, i % 10, round_ * 100 + i)
            sd.flush()
        await sd.snapshot(r)
    await sd.aclose()
    names = dkv_files(tmp_path)
    assert names == ["log-00000005.dkv", "snap-00000005.dkv", "snap-00000006.dkv"]
    assert sum(os.path.getsize(tmp_path / n) for n in names) < 4000
    r2, _ = reload(tmp_path)
    assert state(r2.tree) == state(r.tree)


async def test_snapshot_is_triggered_by_log_growth(tmp_path, autojump_clock):
    r = Replica("me")
    async with open_state_dir(tmp_path, r, min_log_bytes=5000, snapshot_factor=2) as sd:
        for i in range(300):
            write(sd, r, i % 5, i)
            await sd.commit()
            await trio.sleep(0.01)
        await until(lambda: sd.snapshots_written >= 1)
        # the trigger: log > max(min_log_bytes, 2 x snapshot size)
        assert sd.log_bytes <= 5000 + 200
        assert len([n for n in dkv_files(tmp_path) if n.startswith("snap")]) >= 1
    r2, _ = reload(tmp_path)
    assert state(r2.tree) == state(r.tree)


async def test_writes_during_snapshot_are_not_lost(tmp_path):
    r, sd = reload(tmp_path)
    for i in range(3000):
        write(sd, r, i, i)
    sd.flush()

    async def writer():
        for i in range(200):
            write(sd, r, i * 7, -i)
            sd.append_purge(Path("nothing", i))
            await sd.commit()
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as n:
        n.start_soon(writer)
        await sd.snapshot(r)
    await sd.aclose()
    r2, _ = reload(tmp_path)
    assert state(r2.tree) == state(r.tree)


async def test_idle_node_writes_nothing(tmp_path, autojump_clock):
    r = Replica("me")
    async with open_state_dir(tmp_path, r, fsync="interval", interval=1.0) as sd:
        await trio.sleep(30)
        assert dkv_files(tmp_path) == []  # not even an empty segment
        write(sd, r, "a", 1)
        await sd.commit()
        assert sd.fsyncs == 0
        # group commit at the next tick of the interval timer (no bound on the virtual
        # time asserted: the autojump clock runs on while the fsync thread works)
        await until(lambda: sd.fsyncs == 1)
        before = files(tmp_path)
        await trio.sleep(60)
        assert files(tmp_path) == before
        assert sd.fsyncs == 1


async def test_fsync_always_shares_fsyncs(tmp_path):
    r, sd = reload(tmp_path, fsync="always")

    async def one(i):
        write(sd, r, i, i)
        await sd.commit()

    await one(-1)
    assert sd.fsyncs == 1
    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(one, i)
    assert 2 <= sd.fsyncs <= 4
    assert sd.unsynced_bytes == 0
    await sd.aclose()


async def test_fsync_never(tmp_path):
    r, sd = reload(tmp_path, fsync="never")
    write(sd, r, "a", 1)
    await sd.commit()
    await sd.aclose()
    assert sd.fsyncs == 0
    assert reload(tmp_path)[0].tree.lookup(("x", "a")).value == 1


def test_bad_policy():
    with pytest.raises(StorageError):
        StateDir("/nonexistent-dir-for-test", fsync="sometimes")  # type: ignore[arg-type]


def test_garbage_only(tmp_path, caplog):
    (tmp_path / "log-00000000.dkv").write_bytes(os.urandom(1000))
    with pytest.raises(StorageError, match="nothing usable"):
        reload(tmp_path, strict=True)
    with caplog.at_level(logging.WARNING):
        r, sd = reload(tmp_path)
    assert any("nothing usable" in m for m in caplog.messages)
    assert r.tree.lookup(("x",)) is None


# ----------------------------------------------------------------- single files


class Pipe:
    """A non-seekable reader that hands out data in small pieces, like a pipe."""

    name = "<pipe>"

    def __init__(self, data: bytes):
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[:7], self.data[7:]
        return out


def fill(r: Replica, n: int, base: int = 0) -> None:
    for i in range(n):
        r.local_write(Path("x", i), base + i, 1000)


def test_dump_and_load(tmp_path):
    r = Replica("me")
    fill(r, 50)
    r.local_delete(Path("x", 3), 2000)
    fn = tmp_path / "dump.state"
    write_dump(fn, R.iter_entries(r.tree), node=r.name, tick=r.tick, tock=r.tock)
    r2 = Replica("me")
    rep = load_file(fn, r2)
    assert rep.clean and state(r2.tree) == state(r.tree) and r2.tick == r.tick


def test_log_file_full_then_incremental_via_pipe(tmp_path):
    r = Replica("me")
    fill(r, 10)
    a = open_log_file(tmp_path / "a", False, entries=R.iter_entries(r.tree), node="me")
    for i in range(5):
        a.append_entry(Path("x", i), r.local_write(Path("x", i), -i, 2000))
        a.flush()
    # kill -9 now: everything flushed is in the file
    r_mid = Replica("me")
    assert load_file(tmp_path / "a", r_mid).clean
    assert state(r_mid.tree) == state(r.tree)

    a.close()  # "log dest" switches to an incremental file
    b = open_log_file(tmp_path / "b", True, node="me")
    b.append_entry(Path("x", 7), r.local_delete(Path("x", 7), 3000))
    b.append_entry(
        Path(
            "y",
        ),
        r.local_write(Path("y"), "new", 3000),
    )
    b.flush()
    b.close()
    c = open_log_file(tmp_path / "c", True)
    c.close()

    stream = b"".join((tmp_path / n).read_bytes() for n in "abc")
    r2 = Replica("me")
    rep = load_file(Pipe(stream), r2)
    assert rep.clean
    assert state(r2.tree) == state(r.tree)
    assert r2.tick == r.tick


def test_load_file_damage_is_warned_not_fatal(tmp_path, caplog):
    r = Replica("me")
    fill(r, 5)
    buf = tmp_path / "d"
    write_dump(buf, R.iter_entries(r.tree))
    data = buf.read_bytes()
    with caplog.at_level(logging.WARNING):
        r2 = Replica("me")
        rep = load_file(Pipe(data + data[:20]), r2)
    assert rep.damage[0][1] == R.Damage(len(data), len(data) + 20, True)
    assert any(f"offset {len(data)}" in m and "<pipe>" in m for m in caplog.messages)
    assert state(r2.tree) == state(r.tree)

    with pytest.raises(StorageError):
        load_file(tmp_path / "missing", Replica("me"), strict=True)
    with pytest.raises(StorageError):
        load_file(Pipe(b"\0" * 100), Replica("me"), strict=True)
    assert load_file(tmp_path / "missing", Replica("me")).records == 0
