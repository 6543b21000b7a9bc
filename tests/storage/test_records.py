"""The pure storage format: records, CRC frames, damage detection, replay."""

from __future__ import annotations

import struct
import zlib

import pytest

from distkv.core.path import P, Path
from distkv.core.replica import Replica
from distkv.core.tree import Tree
from distkv.core.types import NotGiven
from distkv.storage import records as R


def state(tree: Tree) -> list:
    """Everything replay must reproduce: path, value, chain, tock of entries with history."""
    return sorted(
        ((repr(p), repr(e.value), e.chain, e.tock) for p, e in R.iter_entries(tree)),
    )


def batches(*groups: list[bytes]) -> bytes:
    out = b""
    for g in groups:
        b = R.Batch()
        for r in g:
            b.add(r)
        out += b.take()
    return out


def replay(data: bytes, tree: Tree | None = None) -> tuple[R.Replayer, R.StreamDecoder]:
    rep = R.Replayer(tree if tree is not None else Tree())
    dec = R.StreamDecoder()
    for p in dec.feed(data) + dec.finish():
        rep.payload(p)
    return rep, dec


def three_frames() -> tuple[bytes, list[int]]:
    """Three single-record frames; returns the data and the frame end offsets."""
    data = b""
    ends = []
    for i in range(3):
        data += R.frame(R.encode_change(Path("a", i), i, [("n", i + 1)], 10 + i))
        ends.append(len(data))
    return data, ends


def test_record_roundtrip_keeps_types():
    paths = [P(":"), Path(None, "auth", 1), Path("a", (1, "x", None), b"\x00", 2.5, True)]
    recs = [R.encode_change(p, {"v": [1, 2]}, [("n1", 3), ("n2", 1)], 99) for p in paths]
    recs.append(R.encode_change(("plain", "tuple"), NotGiven, [("n1", 4)], 100))
    recs.append(R.encode_purge(Path("gone")))
    recs.append(R.encode_node("n1", 7, 101))
    out, damage = R.decode_records(batches(recs))
    assert damage == []
    for p, r in zip(paths, out, strict=False):
        assert type(r[0]) is Path and r[0] == p
        assert r[1:] == [{"v": [1, 2]}, [["n1", 3], ["n2", 1]], 99]
    assert out[3] == [Path("plain", "tuple"), [["n1", 4]], 100]
    assert type(out[3][0]) is Path
    assert out[4] == [Path("gone")]
    assert out[5] == {"kind": "node", "node": "n1", "tick": 7, "tock": 101}


def test_frame_layout():
    payload = b"\x01\x02"
    f = R.frame(payload)
    magic, n, crc = struct.unpack("<4sII", f[:12])
    assert (magic, n, f[12:]) == (R.MAGIC, 2, payload)
    assert crc == zlib.crc32(payload, 2)
    with pytest.raises(ValueError):
        R.frame(b"")


def test_big_batch_is_cut_into_frames():
    recs = [R.encode_change(Path("k", i), "x" * 1000, [("n", i + 1)], i) for i in range(600)]
    data = batches(recs)
    dec = R.StreamDecoder()
    assert len(dec.feed(data) + dec.finish()) > 1
    out, damage = R.decode_records(data)
    assert len(out) == 600 and damage == []


@pytest.mark.parametrize("cut", range(1, 40))
def test_torn_tail_every_offset(cut):
    data, ends = three_frames()
    torn = data[: len(data) - cut]
    rep, dec = replay(torn)
    good = max(e for e in [0, *ends] if e <= len(torn))
    assert dec.good_end == good
    assert rep.records == ends.index(good) + 1 if good else rep.records == 0
    if good == len(torn):
        assert dec.damage == []
    else:
        assert dec.damage == [R.Damage(good, len(torn), True)]


def test_zeroed_block_in_the_middle_is_reported_and_skipped():
    data, ends = three_frames()
    bad = data[: ends[0]] + b"\0" * (ends[1] - ends[0]) + data[ends[1] :]
    rep, dec = replay(bad)
    assert dec.damage == [R.Damage(ends[0], ends[1], False)]
    assert rep.records == 2
    assert rep.tree.lookup(("a", 1)) is None
    assert rep.tree.lookup(("a", 2)).value == 2


def test_zeroed_tail_is_torn():
    data, ends = three_frames()
    rep, dec = replay(data + b"\0" * 4096)
    assert dec.damage == [R.Damage(ends[2], ends[2] + 4096, True)]
    assert rep.records == 3


def test_bad_crc_in_middle_resyncs():
    data, ends = three_frames()
    bad = bytearray(data)
    bad[ends[0] + 14] ^= 0x40  # a payload byte of frame 2
    rep, dec = replay(bytes(bad))
    assert dec.damage == [R.Damage(ends[0], ends[1], False)]
    assert rep.records == 2
    assert "lost" in dec.damage[0].describe()


def test_bad_length_in_middle_resyncs():
    data, ends = three_frames()
    bad = bytearray(data)
    struct.pack_into("<I", bad, ends[0] + 4, 10_000_000)  # plausible but wrong
    rep, dec = replay(bytes(bad))
    assert dec.damage == [R.Damage(ends[0], ends[1], False)]
    assert rep.records == 2


def test_bad_crc_at_end_is_torn():
    data, ends = three_frames()
    bad = bytearray(data)
    bad[-1] ^= 1
    rep, dec = replay(bytes(bad))
    assert dec.damage == [R.Damage(ends[1], ends[2], True)]
    assert dec.good_end == ends[1]


def test_feeding_byte_by_byte_is_the_same():
    data, ends = three_frames()
    bad = data[: ends[0]] + b"junkDKv" + data[ends[0] :] + b"DKv\x01\x05"
    whole = replay(bad)[1]
    dec = R.StreamDecoder()
    payloads = []
    for i in range(len(bad)):
        payloads += dec.feed(bad[i : i + 1])
    payloads += dec.finish()
    assert len(payloads) == 3
    assert dec.damage == whole.damage
    assert dec.damage[0] == R.Damage(ends[0], ends[0] + 7, False)
    assert dec.damage[1].torn


def test_concatenated_streams():
    a = batches(
        [R.encode_header("dump", "n1", 1, 1), R.encode_change(Path("x"), 1, [("n1", 1)], 5)]
    )
    b = batches(
        [R.encode_header("log", "n1", 1, 5)], [R.encode_change(Path("x"), 2, [("n1", 2)], 6)]
    )
    rep, dec = replay(a + b + a[:-3])
    assert dec.damage == [R.Damage(len(a + b), len(a + b + a) - 3, True)]
    assert len(rep.headers) == 2
    assert rep.tree.lookup(("x",)).value == 2
    assert rep.ticks == {"n1": 2}


def test_replay_deletes_purges_and_ticks():
    r = Replica("me")
    log = R.Batch()
    for i in range(3):
        log.add_entry(Path("a", i), r.local_write(Path("a", i), i, 1000 + i))
    log.add_entry(Path("a", 1), r.local_delete(Path("a", 1), 2000))
    e, _ = r.apply_remote(Path("b"), "far", (("other", 9),), r.tock + 5)
    log.add_entry(Path("b"), e)
    log.add(R.encode_node("me", 10, 0))  # ticks reserved without a change
    rep, dec = replay(log.take())
    assert dec.damage == []
    assert state(rep.tree) == state(r.tree)
    assert rep.tree.lookup(("a", 1)).is_tombstone
    assert rep.ticks == {"me": 10, "other": 9}
    fresh = Replica("me")
    rep.apply_to(fresh)
    assert fresh.tick == 10 and fresh.tock == r.tock
    # a purge forgets the tombstone and prunes the empty branch
    rep2, _ = replay(R.frame(R.encode_purge(Path("a", 1))), rep.tree)
    assert rep2.tree.lookup(("a", 1)) is None
    assert rep2.tree.lookup(("a", 0)).value == 0


def test_undecodable_records_are_skipped():
    good = R.encode_change(Path("x"), 1, [("n", 1)], 5)
    data = (
        R.frame(b"\xc1")  # a CRC-valid frame with a byte msgpack never uses
        + R.frame(R.Encoder().meta("future-kind", x=1) + b"\x93\x01\x02\x03" + good)
        + R.frame(R.encode_change(Path("y"), 2, [("n", 2)], 6))
    )
    rep, dec = replay(data)
    assert dec.damage == []
    assert rep.bad_records == 2  # the 0xc1 frame, and [1, 2, 3] (not a record)
    assert rep.records == 4
    assert rep.tree.lookup(("x",)).value == 1  # the record after the bad one is kept
    assert rep.tree.lookup(("y",)).value == 2


def test_iter_entries_skips_entries_without_history():
    r = Replica("n")
    r.local_write(Path("a", "b", "c"), 1, 1)
    r.local_write(Path(), "root", 2)
    got = {p: e.value for p, e in R.iter_entries(r.tree)}
    assert got == {(): "root", ("a", "b", "c"): 1}
