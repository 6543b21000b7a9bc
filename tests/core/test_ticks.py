"""TickSet: unit tests plus a hypothesis model check against a plain set."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.core.ticks import TickSet


def test_add_sequential_is_one_range():
    s = TickSet()
    for t in range(1, 1001):
        s.add(t)
    assert s.to_list() == [[1, 1001]]
    assert s.max == 1000 and s.prefix == 1000 and len(s) == 1000
    assert 500 in s and 0 not in s and 1001 not in s


def test_gaps_and_prefix():
    s = TickSet([(1, 4), (6, 7), (9, 10)])
    assert s.prefix == 3
    assert s.missing(12) == [(4, 6), (7, 9), (10, 13)]
    assert s.missing(3) == []
    assert s.missing(8, start=5) == [(5, 6), (7, 9)]
    assert TickSet().missing(2) == [(1, 3)]
    assert TickSet([(2, 3)]).prefix == 0


def test_merging_ranges():
    s = TickSet()
    s.add_range(5, 8)
    s.add_range(1, 3)
    s.add_range(3, 5)  # touches both neighbours
    assert s.to_list() == [[1, 8]]
    s.add_range(10, 12)
    s.add(9)
    assert s.to_list() == [[1, 8], [9, 12]]
    s.add(8)
    assert s.to_list() == [[1, 12]]
    s.add_range(4, 4)  # empty
    assert s.to_list() == [[1, 12]]


def test_set_algebra():
    a = TickSet([(1, 5), (8, 10)])
    b = TickSet([(3, 9)])
    assert (a | b).to_list() == [[1, 10]]
    assert (a & b).to_list() == [[3, 5], [8, 9]]
    assert (a - b).to_list() == [[1, 3], [9, 10]]
    assert (b - a).to_list() == [[5, 8]]
    assert (a & b).issubset(a) and not a.issubset(b)


def test_wire_roundtrip():
    s = TickSet([(1, 5), (8, 10)])
    data = msgpack.unpackb(msgpack.packb(s.to_list()))
    assert TickSet.from_list(data) == s
    with pytest.raises(TypeError):
        hash(s)


ranges = st.lists(
    st.tuples(st.integers(1, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=12,
)


def model(rs) -> set[int]:
    out: set[int] = set()
    for a, b in rs:
        out.update(range(a, b))
    return out


def canonical(s: TickSet) -> bool:
    r = [x for pair in s.to_list() for x in pair]
    # strictly increasing and no touching ranges (end < next start)
    return all(r[i] < r[i + 1] for i in range(len(r) - 1))


@settings(max_examples=200, deadline=None)
@given(ranges, ranges, st.lists(st.integers(1, 70), max_size=20))
def test_matches_set_model(ra, rb, singles):
    a = TickSet(ra)
    for t in singles:
        a.add(t)
    b = TickSet(rb)
    ma = model(ra) | set(singles)
    mb = model(rb)
    assert canonical(a) and canonical(b)
    assert set(a) == ma and len(a) == len(ma)
    assert all((t in a) == (t in ma) for t in range(0, 75))
    assert set(a | b) == ma | mb and canonical(a | b)
    assert set(a & b) == ma & mb and canonical(a & b)
    assert set(a - b) == ma - mb and canonical(a - b)
    hi = 70
    gaps = model(a.missing(hi))
    assert gaps == set(range(1, hi + 1)) - ma
    assert a.max == (max(ma) if ma else 0)
    p = 0
    while p + 1 in ma:
        p += 1
    assert a.prefix == p
    assert TickSet.from_list(a.to_list()) == a
