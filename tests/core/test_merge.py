"""Entry.merge against its specification (the shortcut for single-writer paths
included): highest ``(tock, node)`` wins, chains join pointwise, conflicts are
merges where neither side covers the other."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distkv.core import chain as chains
from distkv.core import tree as trees


def expected(state, value, chain, tock):
    """(new state, code); a state is (value, chain, tock) or None."""
    if state is None:
        return (value, chain, tock), trees.MERGE_NEW
    v0, c0, t0 = state
    head, mine = chain[0], c0[0]
    if head == mine:
        return (v0, chains.merge(mine, c0, chain), t0), trees.MERGE_SAME
    if (tock, head[0]) > (t0, mine[0]):
        code = trees.MERGE_TAKEN if chains.covers(chain, mine) else trees.MERGE_CONFLICT_TAKEN
        return (value, chains.merge(head, chain, c0), tock), code
    code = trees.MERGE_KEPT if chains.covers(c0, head) else trees.MERGE_CONFLICT_KEPT
    return (v0, chains.merge(mine, c0, chain), t0), code


@st.composite
def writes(draw):
    """Writes of nodes a and b (ticks rise per node; a write may know one of the
    other node's), each (value, chain, tock), in some delivery order."""
    out = []
    ticks = {"a": 0, "b": 0}
    for i in range(draw(st.integers(1, 8))):
        node = draw(st.sampled_from("ab" if draw(st.booleans()) else "a"))
        ticks[node] += draw(st.integers(1, 3))
        chain = ((node, ticks[node]),)
        other = "b" if node == "a" else "a"
        if ticks[other] and draw(st.booleans()):
            chain += ((other, draw(st.integers(1, ticks[other]))),)
        out.append((i, chain, draw(st.integers(1, 12))))
    return draw(st.permutations(out))


@given(writes())
def test_merge_follows_its_specification(ws):
    e = trees.Entry()
    state = None
    for value, chain, tock in ws:
        state, code = expected(state, value, chain, tock)
        assert e.merge(value, chain, tock) == code
        assert (e.value, e.chain, e.tock) == state


def test_a_single_writers_next_write_is_taken():
    e = trees.Entry()
    e.merge("v1", (("a", 1),), 10)
    assert e.merge("v2", (("a", 2),), 11) == trees.MERGE_TAKEN
    assert (e.value, e.chain, e.tock) == ("v2", (("a", 2),), 11)
    assert e.merge("v1", (("a", 1),), 10) == trees.MERGE_KEPT  # late: ours stays
    assert (e.value, e.chain, e.tock) == ("v2", (("a", 2),), 11)
