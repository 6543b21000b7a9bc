"""Property tests for distkv.core.pattern against a naive reference matcher."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from distkv.core.pattern import PatternMap, check_pattern, pattern_key, pattern_matches

# A small alphabet, so that patterns and paths collide often. 1, 1.0 and True are one
# element (as dict keys); b"#" and the string "+" are plain elements in a path.
ELEMS = ["a", "b", "c", 1, 1.0, True, 0, "+", "#", b"#"]
WILD = ["+", "#"]


def ref_matches(pattern: tuple, path: tuple) -> bool:
    """Recursive reference: '+' takes one element, '#' takes any number, a wildcard
    may not take a leading None."""

    def takeable(i: int) -> bool:
        return not (i == 0 and path[0] is None)

    def go(pi: int, ei: int) -> bool:
        if pi == len(pattern):
            return ei == len(path)
        pe = pattern[pi]
        if isinstance(pe, str) and pe == "#":
            k = ei
            while True:
                if go(pi + 1, k):
                    return True
                if k == len(path) or not takeable(k):
                    return False
                k += 1
        if ei == len(path):
            return False
        if isinstance(pe, str) and pe == "+":
            return takeable(ei) and go(pi + 1, ei + 1)
        return pe == path[ei] and go(pi + 1, ei + 1)

    return go(0, 0)


@st.composite
def patterns(draw) -> tuple:
    elems = draw(st.lists(st.sampled_from(ELEMS[:6] + WILD + WILD), max_size=5))
    pat = []
    for e in elems:  # no '#' twice in a row
        if not (e == "#" and pat and pat[-1] == "#" and isinstance(pat[-1], str)):
            pat.append(e)
    if draw(st.integers(0, 4)) == 0:
        pat.insert(0, None)
    return check_pattern(pat)


@st.composite
def paths(draw) -> tuple:
    p = draw(st.lists(st.sampled_from(ELEMS), max_size=6))
    if draw(st.integers(0, 4)) == 0:
        p.insert(0, None)
    return tuple(p)


@settings(max_examples=400, deadline=None)
@given(patterns(), paths())
@example(("#", "a", "#"), ("b", "a", "c"))
@example(("#",), (None,))
@example((None, "#"), (None,))
@example(("#", "b", "c"), ("b", "x", "b", "c"))
@example(("+", "#", "+"), ("a",))
def test_matches_agrees_with_reference(pattern, path):
    assert pattern_matches(pattern, path) == ref_matches(pattern, path)


@st.composite
def pattern_for(draw, path: tuple) -> tuple:
    """A pattern built from a path, so that it matches (and the test is not vacuous)."""
    pat: list = []
    for i, e in enumerate(path):
        c = draw(st.sampled_from(["keep", "keep", "+", "#"]))
        if c == "keep" or (i == 0 and e is None):
            c = e  # (a path element "#" or "+" turns into a wildcard: still a match)
        if c == "#" and isinstance(c, str) and pat and pat[-1] == "#" and isinstance(pat[-1], str):
            continue  # no '#' twice in a row: the one before covers this element
        pat.append(c)
    return check_pattern(pat)


@settings(max_examples=200, deadline=None)
@given(paths().flatmap(lambda p: st.tuples(st.just(p), pattern_for(p))))
def test_generated_patterns_match(pp):
    path, pattern = pp
    assert ref_matches(pattern, path)
    assert pattern_matches(pattern, path)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_lookup_is_most_specific_match(data):
    probes = data.draw(st.lists(paths(), min_size=1, max_size=4), label="probes")
    # random patterns, plus several built from the probes so that many of them match
    pats = data.draw(st.lists(patterns(), max_size=6), label="random patterns")
    for path in probes:
        pats += data.draw(st.lists(pattern_for(path), max_size=4), label="matching patterns")
    pats = data.draw(st.permutations(pats), label="order")
    deletes = data.draw(st.lists(st.integers(0, 30), max_size=4), label="deletes")

    pm = PatternMap()
    ref: dict[tuple, int] = {}
    for i, p in enumerate(pats):
        pm.set(p, i)
        if p in ref:  # same key as far as a dict is concerned: keep the first form
            p = next(q for q in ref if q == p)
        ref[p] = i
    for d in deletes:
        if pats:
            p = pats[d % len(pats)]
            pm.delete(p)
            ref.pop(p, None)
    assert len(pm) == len(ref)
    assert bool(pm) == bool(ref)
    assert dict(pm.items()) == ref
    for path in probes:
        hits = [p for p in ref if ref_matches(p, path)]
        got = pm.lookup(path)
        if not hits:
            assert got is None
            continue
        assert got is not None
        pattern, payload = got
        assert pattern in ref
        assert payload == ref[pattern]
        assert ref_matches(pattern, path)
        assert pattern_key(pattern) == max(pattern_key(p) for p in hits)


@st.composite
def acl_patterns(draw) -> tuple:
    """Patterns as ACLs allow them: '#' only at the end."""
    pat = list(draw(st.lists(st.sampled_from(ELEMS[:6] + ["+"]), max_size=4)))
    if draw(st.booleans()):
        pat.append("#")
    if draw(st.integers(0, 4)) == 0:
        pat.insert(0, None)
    return tuple(pat)


@settings(max_examples=300, deadline=None)
@given(st.lists(acl_patterns(), max_size=8), st.lists(paths(), min_size=1, max_size=10))
def test_acls_and_bindings_pick_the_same_most_specific_pattern(pats, probes):
    """ACL rules (a trie) and type/codec bindings (PatternMap) share one notion of
    "covers" and "most specific": for the same patterns they pick the same winner."""
    from distkv.core.acl import ACL

    acl = ACL("t", {p: "r" for p in pats})
    pm = PatternMap()
    for p in pats:
        pm.set(p, p)
    for path in probes:
        rule = acl.rule_for(path)
        got = pm.lookup(path)
        assert (rule is None) == (got is None), (path, rule, got)
        if rule is not None:
            assert rule.pattern == got[0], (path, rule.pattern, got[0])
