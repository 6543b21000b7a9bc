"""Path patterns for type and codec bindings (pure; see distkv/core/pattern.py)."""

from __future__ import annotations

import pytest

from distkv.core.pattern import PatternMap, check_pattern, pattern_key, pattern_matches
from distkv.exceptions import PathError
from distkv.util import P, Path


def m(pattern: str, path: str) -> bool:
    return pattern_matches(tuple(P(pattern)), tuple(P(path)))


# --- matching --------------------------------------------------------------------------


def test_literal_matches_only_itself():
    assert m("a.b", "a.b")
    assert not m("a.b", "a")
    assert not m("a.b", "a.b.c")
    assert not m("a.b", "a.c")
    assert not m("a.b", "b.a")
    assert pattern_matches((), ())
    assert not pattern_matches((), ("a",))
    assert not pattern_matches(("a",), ())


def test_plus_matches_exactly_one_element():
    assert m("a.+.c", "a.b.c")
    assert m("a.+.c", "a:5.c")  # any element type
    assert not m("a.+.c", "a.c")
    assert not m("a.+.c", "a.b.b.c")
    assert m("+", "x")
    assert not pattern_matches(("+",), ())
    assert m("+.+", "x.y")
    assert not m("+.+", "x")


def test_hash_in_the_middle():
    for path in ("stats.quota", "stats.a.quota", "stats.a.b.quota", "stats.quota.quota"):
        assert m("stats.#.quota", path), path
    for path in ("stats.a.quotax", "stats.a.quota.b", "stats", "quota", "x.stats.quota"):
        assert not m("stats.#.quota", path), path


def test_hash_at_the_end():
    assert m("a.#", "a")
    assert m("a.#", "a.b")
    assert m("a.#", "a.b.c.d")
    assert not m("a.#", "b")
    assert not pattern_matches(("a", "#"), ())


def test_hash_at_the_start():
    assert m("#.z", "z")
    assert m("#.z", "a.z")
    assert m("#.z", "a.b.z")
    assert not m("#.z", "a.z.b")
    assert not m("#.z", "a")
    assert pattern_matches(("#",), ())
    assert m("#", "a.b.c")


def test_two_hashes_and_plus():
    assert m("#.a.#", "a")
    assert m("#.a.#", "x.a.y")
    assert not m("#.a.#", "x.y")
    assert m("a.#.+.b", "a.x.b")
    assert m("a.#.+.b", "a.x.y.z.b")
    assert not m("a.#.+.b", "a.b")
    # backtracking: the first 'b' is not the one that ends the path
    assert m("#.b.c", "b.x.b.c")
    assert not m("#.b.c", "b.c.x")


def test_wildcards_never_match_a_leading_none():
    for pattern in ("#", "+", "+.#", "#.type", "+.type", "#.type.#"):
        assert not m(pattern, ":n.type"), pattern
        assert not m(pattern, ":n"), pattern
    assert not pattern_matches((), (None,))


def test_literal_none_matches_system_paths():
    assert m(":n", ":n")
    assert m(":n.type.#", ":n.type")
    assert m(":n.type.#", ":n.type.int.percent")
    assert m(":n.+.int", ":n.type.int")
    assert m(":n.#", ":n")
    assert not m(":n.type.#", "type.int")
    assert not m(":n.#", "a")


def test_wildcards_match_none_inside_tuples_and_odd_elements():
    assert pattern_matches(("a", "+"), ("a", (None, 1)))
    assert pattern_matches(("a", "#"), ("a", b"#", "+", "#"))
    # a literal '+' / '#' in a path is just an element; wildcards are strings only
    assert not pattern_matches(("a", b"#"), ("a", "x", "y"))
    assert pattern_matches(("a", b"#"), ("a", b"#"))


def test_elements_compare_like_dict_keys():
    assert pattern_matches(("a", 1), ("a", 1.0))
    assert pattern_matches(("a", 1), ("a", True))
    assert pattern_matches(("a", True), ("a", 1))
    assert pattern_matches((1.0, "#"), (1, "x"))
    assert not pattern_matches(("a", 1), ("a", "1"))
    assert not pattern_matches(("a", 0), ("a", None))


# --- specificity -----------------------------------------------------------------------


def test_pattern_key_order():
    ladder = ["a.b", "a.+", "a.#", "+.b", "#"]
    keys = [pattern_key(tuple(P(p))) for p in ladder]
    assert keys == sorted(keys, reverse=True)
    assert len(set(keys)) == len(keys)
    ladder = ["stats.a.quota", "stats.+.quota", "stats.#.quota", "stats.#"]
    keys = [pattern_key(tuple(P(p))) for p in ladder]
    assert keys == sorted(keys, reverse=True)
    # exact end beats a '#' that matches nothing; '+' beats the end
    assert pattern_key(("a", "+")) > pattern_key(("a", "+", "#"))
    assert pattern_key(("a", "+", "+")) > pattern_key(("a", "+"))
    assert pattern_key(("a",)) > pattern_key(("a", "#"))


def mk(*patterns: str) -> PatternMap:
    pm = PatternMap()
    for p in patterns:
        pm.set(P(p), p)
    return pm


def test_most_specific_ladder():
    pm = mk("a.b", "a.+", "a.#", "+.b", "#")
    assert pm.lookup(P("a.b")) == (("a", "b"), "a.b")
    assert pm.lookup(P("a.z")) == (("a", "+"), "a.+")
    assert pm.lookup(P("a")) == (("a", "#"), "a.#")
    assert pm.lookup(P("a.b.c")) == (("a", "#"), "a.#")
    assert pm.lookup(P("q.b")) == (("+", "b"), "+.b")
    assert pm.lookup(P("q.z"))[1] == "#"
    assert pm.lookup(Path())[1] == "#"
    assert pm.lookup(P(":n.x")) is None


def test_ladder_removed_step_by_step():
    pm = mk("a.b", "a.+", "a.#", "+.b", "#")
    for expect in ("a.b", "a.+", "a.#", "+.b", "#"):
        assert pm.lookup(P("a.b"))[1] == expect
        pm.delete(P(expect))
    assert pm.lookup(P("a.b")) is None
    assert len(pm) == 0
    assert not pm


def test_most_specific_quota():
    pm = mk("stats.a.quota", "stats.+.quota", "stats.#.quota", "stats.#")
    assert pm.lookup(P("stats.a.quota"))[1] == "stats.a.quota"
    assert pm.lookup(P("stats.b.quota"))[1] == "stats.+.quota"
    assert pm.lookup(P("stats.quota"))[1] == "stats.#.quota"
    assert pm.lookup(P("stats.a.b.quota"))[1] == "stats.#.quota"
    assert pm.lookup(P("stats.a.b"))[1] == "stats.#"
    assert pm.lookup(P("stats"))[1] == "stats.#"
    assert pm.lookup(P("other.a.quota")) is None


def test_lookup_system_paths():
    pm = mk("#", ":n.type.#")
    assert pm.lookup(P(":n.type.int"))[1] == ":n.type.#"
    assert pm.lookup(P(":n.match.x")) is None
    assert pm.lookup(P("type.int"))[1] == "#"


def test_lookup_with_numeric_first_elements():
    pm = PatternMap()
    pm.set((1, "x"), "one")
    assert pm.lookup((True, "x")) == ((1, "x"), "one")
    assert pm.lookup((1.0, "x")) == ((1, "x"), "one")
    assert pm.lookup(("1", "x")) is None
    # the same key as far as the map is concerned: replaces the payload
    pm.set((True, "x"), "true")
    assert len(pm) == 1
    assert pm.lookup((1, "x"))[1] == "true"
    pm.delete((1.0, "x"))
    assert len(pm) == 0
    assert pm.lookup((1, "x")) is None


# --- set / delete ----------------------------------------------------------------------


def test_set_replaces_payload():
    pm = PatternMap()
    pm.set(P("a.#"), 1)
    pm.set(P("a.#"), 2)
    assert len(pm) == 1
    assert pm.lookup(P("a.b")) == (("a", "#"), 2)
    assert list(pm.items()) == [(("a", "#"), 2)]


def test_len_bool_items():
    pm = PatternMap()
    assert len(pm) == 0
    assert not pm
    assert list(pm.items()) == []
    pm.set(P("a.b"), 1)
    pm.set(P("+.b"), 2)
    pm.set((), 3)
    assert len(pm) == 3
    assert pm
    assert dict(pm.items()) == {("a", "b"): 1, ("+", "b"): 2, (): 3}
    # items() is a snapshot: deleting while iterating is fine
    for pat, _ in pm.items():
        pm.delete(pat)
    assert len(pm) == 0
    assert not pm


def test_empty_pattern_matches_only_the_root():
    pm = PatternMap()
    pm.set((), "root")
    assert pm.lookup(()) == ((), "root")
    assert pm.lookup(("a",)) is None


def test_delete_last_pattern_of_a_bucket():
    pm = mk("a.b", "a.c", "b.x")
    pm.delete(P("a.b"))
    assert pm.lookup(P("a.b")) is None
    assert pm.lookup(P("a.c"))[1] == "a.c"
    pm.delete(P("a.c"))  # the last one starting with 'a'
    assert pm.lookup(P("a.c")) is None
    assert len(pm) == 1
    # the bucket can be used again
    pm.set(P("a.#"), "again")
    assert pm.lookup(P("a.c")) == (("a", "#"), "again")
    assert pm.lookup(P("b.x"))[1] == "b.x"
    assert len(pm) == 2


def test_delete_last_wildcard_first_pattern():
    pm = mk("#", "+.x")
    pm.delete(P("#"))
    pm.delete(P("+.x"))
    assert not pm
    assert pm.lookup(P("q.x")) is None
    pm.set(P("+.x"), "back")
    assert pm.lookup(P("q.x"))[1] == "back"


def test_delete_absent_pattern_is_a_no_op():
    pm = mk("a.b")
    pm.delete(P("a.c"))
    pm.delete(P("zz.top"))
    pm.delete(P("#"))
    pm.delete(())
    pm.delete(("a", None))  # not even a valid pattern
    assert len(pm) == 1
    assert pm.lookup(P("a.b"))[1] == "a.b"
    pm.delete(P("a.b"))
    pm.delete(P("a.b"))
    assert len(pm) == 0


# --- check_pattern ---------------------------------------------------------------------


def test_check_pattern_accepts():
    assert check_pattern(P("a.#.b")) == ("a", "#", "b")
    assert type(check_pattern(P("a.+"))) is tuple
    assert check_pattern(iter(["#", "a", "#"])) == ("#", "a", "#")
    assert check_pattern([None, "#"]) == (None, "#")
    assert check_pattern(()) == ()


def test_check_pattern_none_not_first():
    with pytest.raises(PathError, match="None may only be the first element of a pattern"):
        check_pattern(("a", None))
    with pytest.raises(PathError, match="None may only be the first element"):
        check_pattern((None, None))


def test_check_pattern_double_hash():
    with pytest.raises(PathError, match="two '#' in a row in a pattern"):
        check_pattern(("a", "#", "#"))
    with pytest.raises(PathError, match="two '#' in a row"):
        check_pattern(("#", "#"))
    check_pattern(("#", "+", "#"))  # not in a row: fine


def test_set_refuses_bad_patterns():
    pm = PatternMap()
    with pytest.raises(PathError):
        pm.set(("a", None), 1)
    with pytest.raises(PathError):
        pm.set(("#", "#"), 1)
    assert len(pm) == 0
    assert pm.lookup(("a", "b")) is None
