"""Replication properties: SimNet clusters under random ops, loss and partitions converge.

Each example drives a seeded :class:`SimNet` with a random sequence of writes, deletes,
time steps, partitions (and, in the second test, crashes, restarts and joins), then
heals, lets repair run on still-lossy links, and checks that every replica holds the
same tree and bookkeeping, and the right values.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distkv.core import chain as chains
from distkv.core.types import NotGiven
from distkv.testing.simnet import SimNet

NODES = ["a", "b", "c"]
KEYS = [("k", i) for i in range(4)] + [("k", 0, "sub")]

op = st.one_of(
    st.tuples(st.just("w"), st.integers(0, 2), st.integers(0, len(KEYS) - 1), st.integers(0, 9)),
    st.tuples(st.just("d"), st.integers(0, 2), st.integers(0, len(KEYS) - 1)),
    st.tuples(st.just("run"), st.integers(0, 3000)),
    st.tuples(st.just("part"), st.integers(1, 6)),
    st.tuples(st.just("heal")),
)
crash_op = st.one_of(
    op,
    st.tuples(st.just("stop"), st.integers(0, 2)),
    st.tuples(st.just("start"), st.integers(0, 2)),
    st.tuples(st.just("join")),
)
net_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "drop": st.sampled_from([0.0, 0.1, 0.3, 0.5]),
        "dup": st.sampled_from([0.0, 0.2]),
    }
)

# cap the repair backoff so 50 % loss settles within the simulated time limit
FAST = {"repair_max_backoff_ms": 4000}

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def apply_ops(net: SimNet, ops: list) -> None:
    names = list(net.replicas)
    for o in ops:
        kind = o[0]
        if kind == "w":
            n = NODES[o[1]]
            if n not in net.stopped:
                net.write(n, KEYS[o[2]], o[3])
        elif kind == "d":
            n = NODES[o[1]]
            if n not in net.stopped:
                net.delete(n, KEYS[o[2]])
        elif kind == "run":
            net.run(o[1])
        elif kind == "part":
            net.partition([n for i, n in enumerate(names) if o[1] >> i & 1])
        elif kind == "heal":
            net.heal()
        elif kind == "stop":
            net.stop(NODES[o[1]])
        elif kind == "start":
            net.start(NODES[o[1]])
        elif kind == "join" and "j" not in net.replicas:
            net.add_node("j", sync=True)


def finish(net: SimNet) -> None:
    net.heal()
    for n in list(net.stopped):
        net.start(n)
    assert net.settle(), "no convergence:\n" + "\n".join(net.differences())
    net.assert_converged()


@SETTINGS
@given(net_params, st.lists(op, min_size=5, max_size=40))
def test_converge_to_highest_tock(params, ops):
    """No node is ever declared dead, so purging never races a concurrent write: the
    result is exactly the highest (tock, node) write per path, everywhere, and every
    acknowledged write survives unless a later write to its path superseded it."""
    net = SimNet(NODES, dead_after_ms=10**9, purge_interval_ms=2000, **FAST, **params)
    apply_ops(net, ops)
    finish(net)
    exp = net.expected()
    for r in net.running():
        assert net.values(r) == exp, r.name
    # conflicts are detected, not silent: every replica that saw two concurrent
    # writes to a path counts it; the winner is the same everywhere (checked above)
    if any(r.conflicts for r in net.running()):
        assert all(isinstance(c["winner"], list) for r in net.running() for c in r.conflict_log)


@SETTINGS
@given(net_params, st.lists(crash_op, min_size=5, max_size=40))
def test_converge_with_crashes_purges_and_joins(params, ops):
    """Nodes crash (declared dead for repair after 3 s), come back; new nodes join and
    sync while updates keep flowing. Members are never forgotten here, so purges wait
    for crashed nodes (see the next test for forgetting).

    Replicas must converge, and causality is kept: a write that causally follows every
    other write to its path (its chain covers them all) is what every replica ends
    with -- in particular a delete that followed all writes is never undone.
    """
    net = SimNet(NODES, dead_after_ms=3000, purge_interval_ms=1500, **FAST, **params)
    apply_ops(net, ops)
    finish(net)
    by_path: dict = {}
    for w in net.writes:
        by_path.setdefault(w[0], []).append(w)
    for r in net.running():
        vals = net.values(r)
        for path, ws in by_path.items():
            for _path, value, _tock, node, tick, chain in ws:
                others = [(w[3], w[4]) for w in ws if (w[3], w[4]) != (node, tick)]
                if all(chains.covers(chain, lk) for lk in others):
                    if value is NotGiven:
                        assert path not in vals, (r.name, path)
                    else:
                        assert vals.get(path) == value, (r.name, path)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_tombstones_get_purged_everywhere(seed):
    net = SimNet(NODES, seed=seed, drop=0.3, purge_interval_ms=1000)
    for i, k in enumerate(KEYS):
        net.write(NODES[i % 3], k, i)
        net.run(50)
    finish(net)
    for i, k in enumerate(KEYS):
        assert net.delete(NODES[(i + 1) % 3], k)
        net.run(50)
    finish(net)
    net.run(20_000)
    for r in net.running():
        assert net.tombstones(r) == {} and net.values(r) == {}
        assert r.horizon
    net.assert_converged()


def test_forgotten_node_cannot_resurrect_deleted_data():
    """A node away longer than forget_after misses a purge; on return it resyncs."""
    net = SimNet(NODES, seed=3, drop=0.2, dead_after_ms=3000, forget_after_ms=6000,
                 purge_interval_ms=1000, **FAST)  # fmt: skip
    net.write("a", ("x",), 1)
    net.write("a", ("y",), 2)
    finish(net)
    net.stop("c")
    net.delete("b", ("x",))
    net.run(30_000)
    for n in ("a", "b"):
        r = net.replicas[n]
        assert r.tree.lookup(("x",)) is None  # purged without c
        assert r.horizon.get("b", 0) >= 1
    c = net.replicas["c"]
    assert c.tree.lookup(("x",)).value == 1  # c still holds the deleted value
    net.start("c")
    net.write("c", ("z",), 3)  # written while c is stale: newer, kept and spread
    finish(net)
    assert c.tree.lookup(("x",)) is None
    for r in net.running():
        assert net.values(r) == {("y",): 2, ("z",): 3}, r.name


def test_join_during_traffic():
    net = SimNet(NODES, seed=7, drop=0.2, dup=0.1, sync_delay_ms=400, **FAST)
    for i in range(30):
        net.write(NODES[i % 3], ("k", i % 7), i)
        if i == 10:
            net.add_node("j", sync=True)
        net.run(37)
    finish(net)
    j = net.replicas["j"]
    assert j.ready and net.values(j) == net.expected()
