"""Property tests for distkv.core.path: the string form round-trips, types included."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from distkv.core.path import P, Path, sort_key
from distkv.exceptions import PathError


def same(a, b) -> bool:
    """Equality that also insists on equal types (True == 1 == 1.0 otherwise)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


# Strings rich in the characters the syntax cares about.
tricky_text = st.text(alphabet=st.sampled_from(list(".:_ ()',\"\\tfnexybv01-é€\n")))
texts = st.one_of(st.text(), tricky_text)
floats = st.floats(allow_nan=False) | st.sampled_from([0.1, -0.0, 1e16, 1e-7, math.inf, -math.inf])
scalars = st.one_of(texts, st.integers(), st.booleans(), floats, st.binary())
# inside tuples, None is an ordinary value
nested = st.recursive(
    scalars | st.none(),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=10,
)
tuples = st.lists(nested, max_size=4).map(tuple)
elements = st.one_of(scalars, tuples)


@st.composite
def paths(draw) -> Path:
    elems = draw(st.lists(elements, max_size=6))
    if draw(st.booleans()) and draw(st.booleans()):
        elems.insert(0, None)
    return Path(*elems)


@given(paths())
@example(Path())
@example(Path(None))
@example(Path("", "", ""))
@example(Path(True, 1, 1.0, b"1", "1", (True, 1, 1.0, None)))
@example(Path((1,), ((),), (b"",)))
def test_str_roundtrip(p: Path):
    s = str(p)
    q = P(s)
    assert type(q) is Path
    assert same(tuple(q), tuple(p)), (s, q, p)


@given(paths())
def test_canonical_string_is_stable(p: Path):
    s = str(p)
    assert str(P(s)) == s
    assert repr(p) == f"P({s!r})"


@given(paths(), paths())
def test_concat(p: Path, q: Path):
    if q and q[0] is None and p:
        return
    r = p + q
    assert type(r) is Path
    assert tuple(r) == tuple(p) + tuple(q)
    assert same(tuple(P(str(r))), tuple(r))


@given(paths(), elements)
def test_div(p: Path, e):
    r = p / e
    assert type(r) is Path
    assert same(r[-1], e)
    assert r[:-1] == p


@given(st.text(alphabet=st.sampled_from(list(".:_ ab1x(),'-tnefyvbsi"))) | st.text())
def test_parse_never_crashes(s: str):
    """Arbitrary input parses or raises PathError; a parsed path re-serialises stably."""
    try:
        p = P(s)
    except PathError:
        return
    assert type(p) is Path
    assert same(tuple(P(str(p))), tuple(p))
    assert all(x is not None for x in p[1:])


@given(st.lists(elements, max_size=8))
def test_sort_key_total_and_deterministic(items):
    a = sorted(items, key=sort_key)
    b = sorted(reversed(items), key=sort_key)
    # equal keys only for equal values (e.g. never 1 vs 1.0 vs True)
    assert [sort_key(x) for x in a] == [sort_key(x) for x in b]
    for x, y in zip(a, b, strict=True):
        if sort_key(x) == sort_key(y):
            assert x == y
