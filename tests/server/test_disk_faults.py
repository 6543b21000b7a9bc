"""Disk full and a second server on the same state directory (issue #15, item 11)."""

import errno
import os
import subprocess
import sys

import pytest
import trio

from distkv.core.replica import Replica
from distkv.exceptions import ServerClosedError, StorageError
from distkv.storage.statedir import StateDir
from distkv.testing.server import make_config, open_memory_client, open_test_server
from distkv.util import P


class Disk:
    """An ``os.write`` that fails with ENOSPC while ``full`` (after writing ``room``
    more bytes: a write may be cut in the middle)."""

    def __init__(self):
        self.full = False
        self.room = 0

    def write(self, fd, data):
        if not self.full:
            return os.write(fd, data)
        if self.room:
            n = os.write(fd, bytes(data[: self.room]))
            self.room -= n
            return n
        raise OSError(errno.ENOSPC, "No space left on device")


def test_state_dir_keeps_what_a_full_disk_refused(tmp_path):
    disk = Disk()
    r = Replica("me")
    sd = StateDir(tmp_path, write=disk.write)
    sd.load(r)
    for i in range(3):
        sd.append_entry(P(f"a{i}"), r.local_write(P(f"a{i}"), i, 1000))
    sd.flush()
    disk.full, disk.room = True, 10  # the next write is cut after 10 bytes
    sd.append_entry(P("b"), r.local_write(P("b"), "b", 1000))
    with pytest.raises(StorageError, match="No space left"):
        sd.flush()
    assert sd.error is not None
    sd.append_entry(P("c"), r.local_write(P("c"), "c", 1000))
    with pytest.raises(StorageError):
        sd.flush()
    disk.full = False  # space is back
    sd.flush()
    assert sd.error is None
    r2 = Replica("me")
    StateDir(tmp_path).load(r2)
    assert {k: r2.tree.lookup(P(k)).value for k in ("a0", "a1", "a2", "b", "c")} == {
        "a0": 0, "a1": 1, "a2": 2, "b": "b", "c": "c"
    }


async def test_full_disk_refuses_writes_serves_reads_and_recovers(autojump_clock, tmp_path):
    disk = Disk()
    cfg = make_config(server={"state_dir": str(tmp_path), "fsync_interval": 0.5})
    async with open_test_server(cfg=cfg, tcp=True, disk_write=disk.write) as s:
        sd = s.storage
        async with open_memory_client(s) as c:
            await c.set(P("a"), 1)
            disk.full = True
            # the write whose batch could not be stored is not acknowledged: the
            # connection ends (a reconnecting client resends, and is refused) ...
            with pytest.raises(ServerClosedError):
                await c.set(P("b"), 2)
        async with open_memory_client(s) as c:
            # ... and every other write is refused with a clear error; reads go on
            with pytest.raises(StorageError, match="cannot store changes now.*reads work"):
                await c.set(P("c"), 3)
            assert (await c.get(P("a"))).value == 1
            disk.full = False
            with trio.fail_after(5):
                while sd.error is not None:
                    await trio.sleep(0.1)
            await c.set(P("c"), 3)
    r2 = Replica("test")
    StateDir(tmp_path).load(r2)
    assert r2.tree.lookup(P("c")).value == 3
    assert r2.tree.lookup(P("b")).value == 2  # kept and written once space was back


def test_second_server_on_the_same_state_dir_refuses_to_start(tmp_path):
    """Real processes: the probe's second instance deleted the live one's snapshot
    temp file. Now the second one says why in one line and exits."""
    from distkv.testing.process import ServerProcess

    state = tmp_path / "state"
    first = ServerProcess(tmp_path, "one")
    first.start("-s", str(state), "-i", "x")
    try:
        second = ServerProcess(tmp_path, "two")
        proc = subprocess.run(
            [sys.executable, "-m", "distkv", "server", "-s", str(state), "two"],
            capture_output=True, text=True, timeout=30, env=second.env,
        )
        assert proc.returncode != 0
        err = proc.stderr.strip().splitlines()
        want = f"state directory {state} is in use by another server (pid {first.proc.pid})"
        assert len(err) == 1 and want in err[0], err
        assert first.proc.poll() is None  # the first one is untouched
    finally:
        first.stop()


async def test_real_node_survives_nested_path_and_exiting_or_looping_type(tmp_path):
    """The probe's process-killers, against a real ``distkv server``: a request with
    a path nested 1,000 deep, a type check that calls ``exit()`` and one that loops
    for ever. The process stays up and keeps answering."""
    import msgpack

    from distkv.client import open_client
    from distkv.exceptions import ValueTypeError
    from distkv.testing.process import ServerProcess
    from distkv.util import Path
    from distkv.wire import codec

    nested = msgpack.ExtType(codec.EXT_PATH, b"\x91" * 1001 + b"\x01")
    head = codec.packb({"seq": 1, "action": "get_value"})
    request = b"\x83" + head[1:] + msgpack.packb("path") + msgpack.packb(nested)
    node = ServerProcess(tmp_path, "one", cfg={"server": {"limits": {"script_ms": 100}}})
    node.start("-i", "x")
    try:
        with trio.fail_after(30):
            st = await trio.open_tcp_stream("127.0.0.1", node.port)
            unp = codec.unpacker()
            unp.feed(await st.receive_some(65536))
            assert next(unp)["seq"] == 0  # greeting
            await st.send_all(request)
            while not (data := await st.receive_some(65536)) == b"":
                unp.feed(data)
            got = list(unp)
            assert [m.get("error") for m in got] == ["protocol"], got
            await st.aclose()
            cfg = {"connect": {"host": "127.0.0.1", "port": node.port, "auth": None}}
            async with open_client(**cfg) as c:
                code = (
                    "if not isinstance(value, int): raise ValueError('no')\n"
                    "if value == 666: exit()\n"
                    "if value == 777:\n    while True: pass"
                )
                await c.set(Path(None, "type", "evil"), {"code": code, "good": [1], "bad": ["x"]})
                await c.set(Path(None, "match", "e"), {"type": "evil"})
                for bad in (666, 777):
                    with pytest.raises(ValueTypeError, match="SystemExit|budget of 100 ms"):
                        await c.set(P("e"), bad)
                await c.set(P("e"), 5)
                assert (await c.get(P("e"))).value == 5
        assert node.proc.poll() is None
    finally:
        node.stop()
