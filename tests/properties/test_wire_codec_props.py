"""The wire codec: values and paths survive the trip through msgpack."""

from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.core.path import Path
from distkv.wire import codec

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
elements = st.one_of(
    st.text(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.binary(),
    st.floats(allow_nan=False),
)
paths = st.lists(elements, max_size=5).map(Path.build)
values = st.recursive(
    st.one_of(scalars, paths),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a, b) -> bool:
    """Equal, with the same types (True is not 1; a Path is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_roundtrip(v):
    assert same(codec.unpackb(codec.packb(v)), v)


@settings(max_examples=300, deadline=None)
@given(paths)
def test_paths_stay_paths(p):
    msg = codec.unpackb(codec.packb({"path": p}))
    assert type(msg["path"]) is Path
    assert same(tuple(msg["path"]), tuple(p))


@settings(max_examples=100, deadline=None)
@given(st.lists(values, min_size=1, max_size=10), st.integers(1, 50))
def test_stream_split_anywhere(msgs, chunk):
    """The unpacker reassembles messages however the bytes are cut."""
    data = b"".join(codec.packb({"seq": i, "value": v}) for i, v in enumerate(msgs))
    unp = codec.unpacker()
    out = []
    for i in range(0, len(data), chunk):
        unp.feed(data[i : i + chunk])
        out.extend(unp)
    assert [m["seq"] for m in out] == list(range(len(msgs)))
    assert all(same(m["value"], v) for m, v in zip(out, msgs, strict=True))
