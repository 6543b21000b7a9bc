"""What a node accepts from the replication bus: the MAC, and bounds on what a
message may claim (forged ticks near 2**64, clocks far ahead, None inside paths)."""

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from distkv.bus.memory import MemoryNetwork
from distkv.core.admission import (
    MAX_TICK,
    BusSeal,
    full_refusal,
    plain_entry,
    plain_update,
    refusal,
)
from distkv.core.clock import SHIFT
from distkv.testing.cluster import open_test_cluster
from distkv.util import P, Path
from distkv.wire import codec

NOW = 1_700_000_000_000
KEY = "correct horse battery staple"


def update(**over):
    m = {"type": "update", "path": P("a.b"), "value": 1, "chain": [["n1", 5]],
         "tock": NOW << SHIFT, "node": "n1", "tick": 5}  # fmt: skip
    m.update(over)
    return m


def test_a_normal_update_passes():
    assert refusal(update(), NOW, 60_000) is None
    assert refusal(update(path=Path(None, "auth")), NOW, 60_000) is None  # system tree


@pytest.mark.parametrize(
    "over,why",
    [
        ({"tick": 2**64 - 1, "chain": [["n1", 2**64 - 1]]}, "tick out of range"),
        ({"tock": (NOW + 3_600_000) << SHIFT}, "clock 3600 s ahead"),
        ({"path": ("a", None, "b")}, "None inside a path"),
        ({"chain": [["n1", 6]]}, "update's node/tick is not its chain head"),
        ({"node": ""}, "bad node"),
        ({"chain": [["n1", -1]]}, "bad chain link"),
    ],
)
def test_forged_updates_are_refused(over, why):
    assert refusal(update(**over), NOW, 60_000).startswith(why)


def test_presence_horizon_must_lie_within_what_the_node_has_seen():
    p = {"type": "presence", "node": "evil", "tick": 3, "tock": NOW << SHIFT,
         "seen": {"n1": [[1, 10]]}, "horizon": {"n1": 9}}  # fmt: skip
    assert refusal(p, NOW, 60_000) is None
    p["horizon"] = {"n1": 2**40}
    assert refusal(p, NOW, 60_000).startswith("horizon for n1")


@given(st.binary(max_size=200))
def test_only_payloads_sealed_with_the_key_open(payload):
    seal, other = BusSeal(KEY), BusSeal("another key of 16+ bytes")
    assert seal.open(seal.seal(payload)) == payload
    assert other.open(seal.seal(payload)) is None
    assert seal.open(payload) is None  # unsealed: dropped
    tampered = bytearray(seal.seal(payload + b"x"))
    tampered[-1] ^= 1
    assert seal.open(bytes(tampered)) is None


def test_no_key_seals_nothing():
    assert BusSeal(None).seal(b"abc") == b"abc" and BusSeal(None).open(b"abc") == b"abc"
    with pytest.raises(ValueError):
        BusSeal("short")


async def forge(net, topic, msg, key=None):
    """Publish like an intruder on the broker (no node, maybe with a stolen key)."""
    async with net.open_bus("distkv", "intruder") as bus:
        await bus.wait_connected()
        bus.publish_nowait(topic, BusSeal(key).seal(codec.packb(msg)))
        bus.write_now()
        await trio.sleep(1)


async def test_a_forged_update_without_the_key_changes_nothing(autojump_clock):
    net = MemoryNetwork()
    cfg = {"server": {"network_key": KEY}}
    async with open_test_cluster(2, net, cfg=cfg) as cl:
        async with cl.client("n1") as c:
            await c.set(P("x"), "real")
        await cl.wait_converged()
        bad = update(path=P(":.auth"), value={"current": None}, node="ghost",
                     chain=[["ghost", 1]], tick=1, tock=cl.clock() << SHIFT)  # fmt: skip
        await forge(net, "update/ghost", bad)
        for n in ("n1", "n2"):
            rep = cl[n].replicator
            assert rep.stats["unauthenticated"] >= 1
            assert cl[n].replica.tree.lookup(P(":.auth")) is None
        # nodes with the key still replicate
        async with cl.client("n2") as c:
            await c.set(P("y"), "also real")
        await cl.wait_converged()


async def test_a_node_without_the_key_says_what_is_missing(autojump_clock, caplog):
    """A node without server.network_key among nodes with one logged
    'undecodable bus message ...: ExtraData(19249, b'...')'; now it names the setting."""
    net = MemoryNetwork()
    async with open_test_cluster(1, net) as cl:
        sealed = update(node="n9", chain=[["n9", 1]], tick=1, tock=cl.clock() << SHIFT)
        await forge(net, "update/n9", sealed, key=KEY)
        await forge(net, "update/n9", sealed, key=KEY)
        assert cl["n1"].replica.tree.lookup(P("a.b")) is None
    said = [r.getMessage() for r in caplog.records if "update/n9" in r.getMessage()]
    assert len(said) == 1 and "set server.network_key" in said[0], said
    assert "ExtraData" not in said[0]


async def test_a_clock_far_ahead_is_refused_not_adopted(autojump_clock):
    net = MemoryNetwork()
    async with open_test_cluster(1, net) as cl:
        before = cl["n1"].replica.tock
        ahead = update(node="fast", chain=[["fast", 1]], tick=1,
                       tock=(cl.clock() + 3_600_000) << SHIFT)  # fmt: skip
        await forge(net, "update/fast", ahead)
        r = cl["n1"].replica
        assert cl["n1"].replicator.stats["refused"] == 1
        assert (r.tock >> SHIFT) < (before >> SHIFT) + 60_000
        assert r.tree.lookup(P("a.b")) is None
        assert MAX_TICK < 2**63



_MISSING = object()
_ODD = [_MISSING, None, "", "n2", "x" * 256, 0, -1, True, 5.0, b"n1", [], {}, ("n1", 5)]
_FIELDS = {
    "type": ["entry", "presence"],
    "node": ["n1"],
    "tick": [2**62, 2**62 - 1, 2**64 - 1, 6],
    "prev": [4, 2**62, 2**64],
    "tock": [(NOW + 3_600_000) << SHIFT, ((NOW + 60_000) << SHIFT) + 5,
             ((NOW + 60_001) << SHIFT)],
    "chain": [[["n1", 5], ["n2", 3]], [], [["n1", 5], ["n2", 2**62]], [("n1", 5)], (("n1", 5),), [["n1", True]],
              [["n1", 5, 1]], [[b"n1", 5]], [["n1", 5], ["n2", -3]], [["n1", 5], "n2"],
              [["n1", 5], ["", 3]], [["n1", 5]] * 10_001, [["n1", 5.0]]],
    "path": [Path(None, "x"), P("a"), ("a", None), ["a", "b"], "a.b", Path(), (None,)],
    "to": ["n2", "n" * 256], "origin": [5, "n3"], "ranges": [[[1, 2]], 5], "seen": [{}, 5],
    "horizon": [{}, 5], "other": [1],
    # node, tick and the chain's head changed together
    "head": [("x" * 256, 5), ("", 5), ("n1", 2**62), ("n1", -1), ("n1", True),
             (b"n1", 5), ("n1", 5.0), (5, 5), (None, 5)],
}  # fmt: skip


def entry(**over):
    m = {"type": "entry", "path": P("a.b"), "value": 1, "chain": [["n1", 5], ["n2", 3]],
         "tock": NOW << SHIFT, "to": "n2"}  # fmt: skip
    m.update(over)
    return m


def _changed(base: dict, changes: list[tuple[str, object]]) -> dict:
    m = dict(base)
    for k, v in changes:
        if k == "head" and isinstance(v, tuple) and len(v) == 2:
            m["node"], m["tick"] = v
            rest = m["chain"][1:] if isinstance(m.get("chain"), list | tuple) else []
            m["chain"] = [list(v), *rest]
        elif v is _MISSING:
            m.pop(k, None)
        else:
            m[k] = v
    return m


BASES = [update(prev=3), entry(), entry(to="n2" * 100)]


def test_the_shortcut_for_plain_messages_refuses_what_the_full_check_refuses():
    """refusal() takes a shortcut for ordinary updates and entries (every replicated
    write goes through it): it must give what the full check gives, for valid ones
    and for every one with one odd field."""
    for base in BASES:
        for k, pool in _FIELDS.items():
            for v in [*pool, *_ODD]:
                m = _changed(base, [(k, v)])
                assert refusal(m, NOW, 60_000) == full_refusal(m, NOW, 60_000), m


_CHANGE = st.sampled_from(sorted(_FIELDS)).flatmap(
    lambda k: st.tuples(st.just(k), st.sampled_from([*_FIELDS[k], *_ODD]))
)


@given(st.sampled_from(BASES), st.lists(_CHANGE, min_size=2, max_size=4))
def test_the_shortcut_agrees_with_the_full_check_on_several_odd_fields(base, changes):
    m = _changed(base, changes)
    assert refusal(m, NOW, 60_000) == full_refusal(m, NOW, 60_000)


def test_the_shortcut_takes_the_updates_a_node_sends():
    m = update(prev=3)
    assert plain_update(m, NOW, 60_000)
    assert plain_update(update(chain=[["n1", 5], ["n2", 9]]), NOW, 60_000)
    assert not plain_update(update(path=Path(None, "auth")), NOW, 60_000)  # the full check
    assert refusal(update(path=Path(None, "auth")), NOW, 60_000) is None
    assert plain_entry(entry(), NOW, 60_000)
