"""`client log dest` on a running node while a client writes: the node writes the
files' big parts in worker threads, and switching files still loses and repeats
nothing (issue #14: blocking file work off the trio thread)."""

from __future__ import annotations

import collections

import trio

from distkv.core.path import Path
from distkv.core.replica import Replica
from distkv.storage import records as R
from distkv.storage.statefiles import load_file
from distkv.testing.server import make_config, open_memory_client, open_test_server


def keys_in(data: bytes) -> collections.Counter:
    """How often each written key occurs as a record (dump or change) in a file."""
    recs, damage = R.decode_records(data)
    assert not damage
    return collections.Counter(r[0][1] for r in recs if isinstance(r, list) and len(r[0]) == 2 and r[0][0] == "k")


async def test_log_files_switched_under_writes_hold_every_change_once(tmp_path):
    cfg = make_config(server={"log_dirs": [str(tmp_path)]})
    files = [tmp_path / n for n in ("full", "inc1", "inc2", "inc3")]
    async with open_test_server(cfg=cfg, init=0) as server:
        async with open_memory_client(server) as writer, open_memory_client(server) as admin:
            for i in range(300):  # a state worth writing in several frames
                await writer.set(Path("pre", i), "x" * 2000)
            written = 0
            done = trio.Event()
            wrote = trio.Event()

            async def write() -> None:
                nonlocal written, wrote
                while not done.is_set():
                    await writer.set(Path("k", written), written)
                    written += 1
                    wrote.set()
                    wrote = trio.Event()

            async def more_writes(n: int = 20) -> None:
                target = written + n
                while written < target:
                    await wrote.wait()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await admin.request("log", file=str(files[0]))
                for f in files[1:]:
                    await more_writes()
                    await admin.request("log", file=str(f), incremental=True)
                await more_writes()
                assert (await admin.request("log_stop"))["stopped"]
                done.set()
            # a write between the last switch and the stop is in the last file
            counts = collections.Counter()
            for f in files:
                counts += keys_in(f.read_bytes())
            in_files = set(counts)
            assert written > 0
            assert all(n == 1 for n in counts.values()), "a change is in two files"
            # the files hold the writes up to `log stop` without a gap (later writes,
            # acknowledged before its reply arrived, are in none)
            assert in_files == set(range(len(in_files)))
            assert 80 <= len(in_files) <= written
            r = Replica("check")
            for f in files:
                load_file(f, r)
            assert r.tree.lookup(Path("pre", 299)).value == "x" * 2000
