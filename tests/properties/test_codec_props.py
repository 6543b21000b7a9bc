"""Property tests for distkv.core.codecs: converters round-trip and leave others alone."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from distkv.core.codecs import CodecRegistry
from distkv.core.pattern import pattern_matches
from distkv.exceptions import ValueTypeError

FLOAT_STR = {
    "encode": "return str(value)",
    "decode": "return float(value)",
    "in": [["12.5", 12.5]],
    "out": [[13.25, "13.25"]],
}
PATTERN = ("monitor", "#", "value")

BOOL_DECODE = """\
v = value.strip().lower() if isinstance(value, str) else value
if v in ("on", "true", "yes", "1", "y", "t", 1, True):
    return True
if v in ("off", "false", "no", "0", "n", "f", "", 0, False):
    return False
raise ValueError(f"not a bool: {value!r}")
"""
BOOL = {
    "encode": 'return "ON" if value else "OFF"',
    "decode": BOOL_DECODE,
    "in": [["on", True], [" Yes", True], ["0", False], ["OFF", False]],
    "out": [[True, "ON"], [False, "OFF"]],
}
TRUEISH = ["on", "true", "yes", "1", "y", "t"]
FALSEISH = ["off", "false", "no", "0", "n", "f", ""]


def registry():
    reg = CodecRegistry()
    for path, value in (
        ((None, "codec", "float", "str"), FLOAT_STR),
        ((None, "conv", "floatval", *PATTERN), {"codec": "float.str"}),
        ((None, "codec", "bool"), BOOL),
        ((None, "conv", "switch", "switch", "+"), {"codec": "bool"}),
    ):
        reg.validate(path, value)
        assert reg.apply(path, value)
    return reg


REG = registry()
FLOATVAL = REG.converter("floatval")
SWITCH = REG.converter("switch")

names = st.sampled_from(["monitor", "value", "a", "b", "", "#", "+", 1, 2.5, True])


@st.composite
def matching_paths(draw) -> tuple:
    middle = draw(st.lists(names, max_size=4))
    return ("monitor", *middle, "value")


@st.composite
def other_paths(draw) -> tuple:
    p = tuple(draw(st.lists(names, max_size=5)))
    if draw(st.booleans()):
        p = (None, *p)  # the system tree is never matched by '#'
    if pattern_matches(PATTERN, p):
        p = (*p, "x")
    return p


simple_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(matching_paths(), st.floats(allow_nan=False, allow_infinity=False))
@example(("monitor", "value"), -0.0)
@example(("monitor", "value"), 5e-324)
@example(("monitor", "value"), 1.7976931348623157e308)
@example(("monitor", "a", "b", "value"), 0.1)
def test_float_str_roundtrip(path, x):
    s = FLOATVAL.encode(path, x)
    assert type(s) is str
    assert s == repr(x)
    y = FLOATVAL.decode(path, s)
    assert type(y) is float
    assert y == x
    assert math.copysign(1, y) == math.copysign(1, x)


@settings(max_examples=200, deadline=None)
@given(other_paths(), simple_values)
def test_other_paths_pass_unchanged(path, value):
    assert not pattern_matches(PATTERN, path)
    assert FLOATVAL.decode(path, value) is value
    assert FLOATVAL.encode(path, value) is value


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(TRUEISH + FALSEISH),
    st.sampled_from([str, str.upper, str.title]),
    st.text(alphabet=" \t\n", max_size=2),
    st.text(alphabet=" \t\n", max_size=2),
)
def test_bool_codec_answers_on_or_off(word, case, pre, post):
    s = pre + case(word) + post
    b = SWITCH.decode(("switch", "x"), s)
    assert type(b) is bool
    assert b is (word in TRUEISH)
    assert SWITCH.encode(("switch", "x"), b) == ("ON" if b else "OFF")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=6) | st.integers(-3, 3) | st.booleans())
def test_bool_codec_accepted_inputs_always_encode_to_on_off(s):
    try:
        b = SWITCH.decode(("switch", "lamp"), s)
    except ValueTypeError as exc:  # what is refused, is refused properly
        assert str(exc).startswith(f"switch.lamp: codec bool cannot decode {s!r}: ValueError")
        return
    assert SWITCH.encode(("switch", "lamp"), b) in ("ON", "OFF")
    # decoding what we answer gives the same value back
    assert SWITCH.decode(("switch", "lamp"), SWITCH.encode(("switch", "lamp"), b)) is b


def test_bool_codec_refuses_nonsense():
    with pytest.raises(ValueTypeError) as ei:
        SWITCH.decode(("switch", "lamp"), "warm")
    assert str(ei.value) == (
        "switch.lamp: codec bool cannot decode 'warm': ValueError: not a bool: 'warm'"
    )
