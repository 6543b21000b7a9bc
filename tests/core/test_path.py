"""Unit tests for distkv.core.path: construction, operators, string syntax, errors."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

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


# --- construction -------------------------------------------------------------


def test_construct_and_tuple_semantics():
    p = Path("a", 1)
    assert isinstance(p, tuple)
    assert p == ("a", 1)
    assert Path("a") == ("a",)
    assert hash(Path("a", 1)) == hash(("a", 1))
    assert Path() == ()
    assert len(Path("a", "b", "c")) == 3
    assert Path("a.b") == ("a.b",)  # the constructor never parses


def test_no_instance_dict():
    with pytest.raises(AttributeError):
        Path("a").foo = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "elems",
    [
        ("a", 1, True, False, 1.5, b"x", ("t", (1, None)), ""),
        (None, "sys"),
        (None,),
        ((),),
    ],
)
def test_valid_elements(elems):
    assert tuple(Path(*elems)) == elems
    assert tuple(Path.build(elems)) == elems
    assert tuple(Path.build(list(elems))) == elems


@pytest.mark.parametrize(
    "elems",
    [
        ("a", None),
        ("a", [1]),
        ({"a": 1},),
        ("a", bytearray(b"x")),
        ("a", 1j),
        (("a", [1]),),
        (float("nan"),),
        (("a", float("nan")),),
        (Path("a"),),
    ],
)
def test_invalid_elements(elems):
    with pytest.raises(PathError):
        Path(*elems)
    with pytest.raises(PathError):
        Path.build(elems)


def test_none_error_message():
    with pytest.raises(PathError, match="first"):
        Path("a", None)


def test_build_returns_path_unchanged():
    p = P("a.b")
    assert Path.build(p) is p
    assert type(Path.build(("a",))) is Path
    # what the parser builds (without re-checking the elements) is a Path too
    assert P("a:1") == ("a", 1) and type(P("a:1")) is Path
    assert type(P(":")) is Path and P(":") == ()


def test_P_accepts_path():
    p = Path("a", 1)
    assert P(p) is p
    with pytest.raises(PathError):
        P(123)  # type: ignore[arg-type]


# --- operators ----------------------------------------------------------------


def test_div_and_add():
    p = P("a")
    q = p / 1
    assert type(q) is Path and q == ("a", 1)
    assert p == ("a",)  # unchanged
    r = p + P("b.c")
    assert type(r) is Path and r == ("a", "b", "c")
    assert type(p + ("x",)) is Path
    assert type(p + ["x"]) is Path
    assert type(("x",) + p) is Path and ("x",) + p == ("x", "a")
    assert P(":n") + P("x") == (None, "x")
    assert Path() + P(":n.x") == (None, "x")
    with pytest.raises(PathError):
        p / None
    with pytest.raises(PathError):
        p / [1]
    with pytest.raises(PathError):
        p / P("b")  # use +
    with pytest.raises(PathError):
        p + P(":n.x")
    with pytest.raises(PathError):
        p + (None,)
    with pytest.raises(PathError):
        ("a",) + P(":n")
    with pytest.raises(TypeError):
        p + "b"  # type: ignore[operator]


def test_slicing():
    p = P(":n.a.b.c")
    assert type(p[1:]) is Path and p[1:] == ("a", "b", "c")
    assert type(p[:2]) is Path
    assert p[0] is None and p[-1] == "c"
    assert P("a.b.c")[::-1] == ("c", "b", "a")
    with pytest.raises(PathError):
        p[::-1]  # would move None away from the front


def test_pickle_and_copy():
    p = P(":n.a:5:(1,'x')")
    for q in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert type(q) is Path
        assert q == p
    assert pickle.loads(pickle.dumps(Path())) == ()


def test_repr():
    assert repr(P("a.b")) == "P('a.b')"
    assert repr(Path()) == "P(':')"
    assert eval(repr(Path("a", 1)), {"P": P}) == ("a", 1)


# --- string form --------------------------------------------------------------

EXAMPLES = [
    ("one.two.three", ("one", "two", "three")),
    (":", ()),
    ("a:123", ("a", 123)),
    (":-5", (-5,)),
    (":n", (None,)),
    (":n.foo", (None, "foo")),
    (":t", (True,)),
    (":f.x", (False, "x")),
    (":e", ("",)),
    ("a:e", ("a", "")),
    (":e.a", ("", "a")),
    (":e:e", ("", "")),
    ("a:.b", ("a.b",)),
    ("a::b", ("a:b",)),
    ("a:_b", ("a b",)),
    ("a_b", ("a_b",)),
    (":.", (".",)),
    ("::", (":",)),
    (":_", (" ",)),
    (":5.a", (5, "a")),
    (":t:f", (True, False)),
    (":1:.5", (1.5,)),
    (":-0:.0", (-0.0,)),
    (":1e+16", (1e16,)),
    (":1e999:-1e999", (math.inf, -math.inf)),
    (":vabc", (b"abc",)),
    (":v", (b"",)),
    (":va:.b:_c", (b"a.b c",)),
    (":y00ff", (b"\x00\xff",)),
    (":(1,2:.5)", ((1, 2.5),)),
    (":(1,)", ((1,),)),
    (":()", ((),)),
    (":((),(True,None),'a:_b')", (((), (True, None), "a b"),)),
    (":n.a:1:t:y00.b", (None, "a", 1, True, b"\x00", "b")),
    ("äöü.€", ("äöü", "€")),
]


@pytest.mark.parametrize("s,elems", EXAMPLES)
def test_canonical_examples(s, elems):
    p = P(s)
    assert same(tuple(p), elems)
    assert str(p) == s
    assert str(Path(*elems)) == s


@pytest.mark.parametrize(
    "s,elems",
    [
        ("a.:123", ("a", 123)),  # dot before a new-element colon is tolerated
        ("a.:t", ("a", True)),
        ("a b", ("a b",)),  # literal space
        (":x1F", (31,)),
        (":x-ff", (-255,)),
        (":b101", (5,)),
        (":yABCD", (b"\xab\xcd",)),
        (":sAAE=", (b"\x00\x01",)),
        (":iTrue", (True,)),
        (":True", (True,)),
        (":None", (None,)),
        (":'a'", ("a",)),
        (":'x:.y'", ("x.y",)),
        (":1_000", (1000,)),
        (":0x10", (16,)),
        (":(1, 2)", ((1, 2),)),
        (":vä", ("ä".encode(),)),
    ],
)
def test_non_canonical_input(s, elems):
    p = P(s)
    assert same(tuple(p), elems)
    assert P(str(p)) == p


@pytest.mark.parametrize(
    "s,msg",
    [
        ("", "empty string"),
        (".a", "start"),
        ("a.", "end"),
        ("a..b", "empty element"),
        ("a:", "dangling"),
        ("a:n", "first"),
        (":n:n", "first"),
        ("a:None", "first"),
        (":x", "hex"),
        (":xyz", "hex"),
        (":b12", "binary"),
        (":y0", "hex digits"),
        (":yzz", "hex digits"),
        (":s!!", "base64"),
        (":(1,2.5)", "literal"),  # the inner dot ends the element
        (":foo", "literal"),
        (":i__import__('os')", "literal"),
        (":print(1)", "literal"),
        (":open('/etc/passwd')", "literal"),
        (":(lambda:_1)()", "literal"),
        (":1+2", "literal"),
        (":[1]", "list"),
        (":{1}", "set"),
        (":1j", "complex"),
        (":tx", "literal"),
        (":t_", "missing"),
        (":t:.x", "needs a '.'"),
        (":e:_", "needs a '.'"),
        ("a.:", "dangling"),
    ],
)
def test_errors(s, msg):
    with pytest.raises(PathError, match=msg):
        P(s)


def test_underscore_escape_is_not_code():
    # ":_" is the space escape, so this is merely an odd string, never code
    assert P(":__import__('os')") == (" _import__('os')",)


def test_error_not_str():
    with pytest.raises(PathError):
        Path.from_str(b"a")  # type: ignore[arg-type]


def test_error_mentions_position():
    with pytest.raises(PathError, match="position 4"):
        P("a.b.:n")


def test_literal_eval_is_not_eval(monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("eval must not be used")

    monkeypatch.setattr(builtins, "eval", boom)
    assert P(":(1,'a')") == ((1, "a"),)


def test_type_preserved():
    p = P(str(Path(True, 1, 1.0, b"1", "1", (True, 1, 1.0))))
    assert same(tuple(p), (True, 1, 1.0, b"1", "1", (True, 1, 1.0)))


# --- sort_key -------------------------------------------------------------------


def test_sort_key_mixed():
    items = ["b", 2, None, b"z", (1, "a"), True, 1.5, "a", False, (0,), 1, 1.0, -3]
    got = sorted(items, key=sort_key)
    assert got[0] is None
    assert got[1:3] == [False, True]
    assert got[3:8] == [-3, 1, 1.0, 1.5, 2]
    assert type(got[4]) is int and type(got[5]) is float  # int before equal float
    assert got[8:10] == ["a", "b"]
    assert got[10] == b"z"
    assert got[11:] == [(0,), (1, "a")]
    assert sorted(reversed(items), key=sort_key) == got


def test_sort_key_nested_mixed_tuples():
    items = [(1, "a"), ("a", 1), (None,), (1,), ()]
    assert sorted(items, key=sort_key) == [(), (None,), (1,), (1, "a"), ("a", 1)]


def test_sort_key_bad():
    with pytest.raises(PathError):
        sort_key([1])
