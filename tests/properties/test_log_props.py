"""Property tests for the storage log: any prefix replays to the state at that point.

A random history of local writes, deletes, remote merges and purges is logged the way
the server does it (the entry's state after each change, one frame per batch). Cutting
the byte stream *anywhere* must replay to exactly the state after the last complete
batch, report the rest as a torn tail, and continue the tick counter.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distkv.core.path import Path
from distkv.core.replica import Replica
from distkv.core.tree import Tree
from distkv.core.types import NotGiven
from distkv.storage import records as R

PATHS = [
    Path(),
    Path("a"),
    Path("a", "b"),
    Path("a", 1),
    Path("a", 1, "deep"),
    Path("b", ("t", 1, None)),
    Path("c", b"\x00\xff"),
    Path(None, "sys"),
]
# msgpack's range: the server rejects larger ints before they reach the tree
ints = st.integers(-(2**63), 2**64 - 1)
values = st.one_of(
    ints,
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.binary(max_size=4),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), ints, max_size=2),
)
paths = st.sampled_from(PATHS)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), paths, values),
        st.tuples(st.just("del"), paths),
        st.tuples(
            st.just("remote"),
            paths,
            values,
            st.sampled_from(["n1", "n2"]),
            st.integers(-3, 3),
            st.booleans(),
        ),
        st.tuples(st.just("purge"), paths),
        st.tuples(st.just("flush")),
    ),
    max_size=40,
)


def state(tree: Tree) -> list:
    """Entries with history, plus the node count (purges must prune the same way)."""
    got = sorted((repr(p), repr(e.value), e.chain, e.tock) for p, e in R.iter_entries(tree))
    return [tree.count(), *got]


def run(history: list) -> tuple[bytes, list[int], list[tuple[list, int]]]:
    """Play ``history``; returns the log, the frame ends, and the state + tick after each."""
    r = Replica("me")
    ticks = {"n1": 0, "n2": 0}
    batch = R.Batch()
    log = b""
    ends = [0]
    states = [(state(r.tree), 0)]
    now = 1000

    def flush() -> None:
        nonlocal log
        data = batch.take()
        if data:
            log += data
            ends.append(len(log))
            states.append((state(r.tree), r.tick))

    for op in history:
        now += 1
        kind, *args = op
        if kind == "set":
            batch.add_entry(args[0], r.local_write(args[0], args[1], now))
        elif kind == "del":
            e = r.local_delete(args[0], now)
            if e is not None:
                batch.add_entry(args[0], e)
        elif kind == "remote":
            path, value, node, dtock, knew = args
            ticks[node] += 1
            cur = r.tree.lookup(path)
            chain = ((node, ticks[node]),)
            if knew and cur is not None and cur.node is not None:
                chain += tuple(lk for lk in cur.chain if lk[0] != node)
            e, _ = r.apply_remote(path, value, chain, max(1, r.tock + dtock))
            batch.add_entry(path, e)
        elif kind == "purge":
            e = r.tree.lookup(args[0])
            if e is not None and e.is_tombstone:
                e.node, e.tick, e.tock, e.prev = None, 0, 0, ()
                r.tree.prune(args[0])
                batch.add(R.encode_purge(args[0]))
        else:
            flush()
    flush()
    return log, ends, states


def replay(data: bytes) -> tuple[Replica, R.StreamDecoder]:
    r = Replica("me")
    rep = R.Replayer(r.tree)
    dec = R.StreamDecoder()
    for p in dec.feed(data) + dec.finish():
        rep.payload(p)
    rep.apply_to(r)
    assert rep.bad_records == 0
    return r, dec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.data())
def test_any_prefix_replays_to_the_state_at_that_point(history, data):
    log, ends, states = run(history)
    cut = data.draw(st.integers(0, len(log)), label="cut")
    r, dec = replay(log[:cut])
    k = max(i for i, e in enumerate(ends) if e <= cut)
    want_state, want_tick = states[k]
    assert state(r.tree) == want_state
    assert r.tick == want_tick
    assert dec.good_end == ends[k]
    if cut == ends[k]:
        assert dec.damage == []
    else:
        assert dec.damage == [R.Damage(ends[k], cut, True)]
    # tombstones stay tombstones
    for _, e in R.iter_entries(r.tree):
        assert e.node is not None and (e.value is not NotGiven or e.is_tombstone)


@settings(max_examples=100, deadline=None)
@given(ops, st.data(), st.binary(min_size=1, max_size=64))
def test_garbage_between_frames_loses_nothing(history, data, garbage):
    log, ends, states = run(history)
    i = data.draw(st.integers(0, len(ends) - 1), label="at frame end")
    at = ends[i]
    r, dec = replay(log[:at] + garbage + log[at:])
    assert state(r.tree) == states[-1][0]
    assert r.tick == states[-1][1]
    assert dec.damage == [R.Damage(at, at + len(garbage), at == len(log))]
