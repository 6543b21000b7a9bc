"""Stored type checks (pure; see distkv/core/valuetypes.py)."""

from __future__ import annotations

import logging

import pytest

from distkv.core.types import NotGiven
from distkv.core.valuetypes import TypeRegistry, type_name
from distkv.exceptions import ClientError, PathError, ScriptError, ValueTypeError
from distkv.util import P

INT_CHECK = 'if int(value) != value: raise ValueError("not an integer")\n'
PERCENT_CHECK = 'if not (0 <= value <= 100): raise ValueError("not a percentage")\n'

INT = {"code": INT_CHECK, "good": [0, -2, 123], "bad": [1.2, "Hello"]}
PERCENT = {"code": PERCENT_CHECK, "good": [0, 99, 100], "bad": [-1, 101]}
QUOTA = ("stats", "#", "quota")


def put(reg: TypeRegistry, path, value) -> None:
    """A local write: validate, then apply (as the server does)."""
    path = tuple(path)
    reg.validate(path, value)
    assert reg.apply(path, value) is True


def tutorial() -> TypeRegistry:
    reg = TypeRegistry()
    put(reg, P(":n.type.int"), INT)
    put(reg, P(":n.type.int.percent"), PERCENT)
    put(reg, (None, "match", *QUOTA), {"type": ["int", "percent"]})
    return reg


# --- the tutorial ----------------------------------------------------------------------


def test_tutorial_types_accept_and_reject():
    reg = tutorial()
    assert set(reg.types) == {("int",), ("int", "percent")}
    reg.check(P("stats.foo.bar.quota"), 12)
    reg.check(P("stats.quota"), 0)
    reg.check(P("stats.x.quota"), 100)

    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.foo.bar.quota"), "123")
    assert str(ei.value) == (
        "stats.foo.bar.quota: '123' is not a valid int: ValueError: not an integer"
    )
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.foo.bar.quota"), 123)
    assert str(ei.value) == (
        "stats.foo.bar.quota: 123 is not a valid int.percent: ValueError: not a percentage"
    )
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.a.quota"), 1.5)
    assert str(ei.value) == "stats.a.quota: 1.5 is not a valid int: ValueError: not an integer"


def test_other_paths_are_not_checked():
    reg = tutorial()
    reg.check(P("stats.foo.bar.other"), "123")
    reg.check(P("stats.a.quota.b"), "123")
    reg.check(P("other.quota"), "123")
    reg.check(P(":n.stats.quota"), "123")  # wildcards do not reach the system tree


def test_no_matches_no_checks():
    reg = TypeRegistry()
    put(reg, P(":n.type.int"), INT)
    assert not reg.matches
    reg.check(P("stats.a.quota"), "anything")


def test_match_by_dotted_name_and_most_specific_wins():
    reg = tutorial()
    put(reg, P(":n.match.stats.special.quota"), {"type": "int"})
    reg.check(P("stats.special.quota"), 123)  # only an int here
    with pytest.raises(ValueTypeError, match="not a valid int.percent"):
        reg.check(P("stats.normal.quota"), 123)
    with pytest.raises(ValueTypeError, match="not a valid int:"):
        reg.check(P("stats.special.quota"), 1.5)


def test_check_returning_false_rejects():
    reg = TypeRegistry()
    put(
        reg,
        P(":n.type.even"),
        {"code": "return value % 2 == 0", "good": [0, 2], "bad": [1, 3]},
    )
    put(reg, P(":n.match.n.+"), {"type": "even"})
    reg.check(P("n.x"), 4)
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("n.x"), 5)
    assert str(ei.value) == "n.x: 5 is not a valid even: the check returned False"
    # other falsy results (0, None) are not a rejection: only False is
    put(reg, P(":n.type.lax"), {"code": "return 0 if value else False", "good": [1], "bad": [0]})
    put(reg, P(":n.match.lax"), {"type": "lax"})
    reg.check(P("lax"), 1)
    with pytest.raises(ValueTypeError, match="lax: 0 is not a valid lax: the check returned False"):
        reg.check(P("lax"), 0)


def test_type_name():
    assert type_name("int.percent") == ("int", "percent")
    assert type_name(["int", "percent"]) == ("int", "percent")
    assert type_name(("int",)) == ("int",)
    with pytest.raises(ClientError, match="a type name must be a string, not int"):
        type_name(5)
    with pytest.raises(ClientError, match="bad type name"):
        type_name("int..x")
    with pytest.raises(ClientError, match="bad type name"):
        type_name([])
    with pytest.raises(ClientError, match="bad type name"):
        type_name(["int", 1])


# --- validate refuses broken definitions ------------------------------------------------


def test_validate_needs_examples():
    reg = TypeRegistry()
    msg = r"type small needs good and bad examples \(-g / -b\)"
    with pytest.raises(ScriptError, match=msg):
        reg.validate(P(":n.type.small"), {"code": "pass"})
    with pytest.raises(ScriptError, match=msg):
        reg.validate(P(":n.type.small"), {"code": INT_CHECK, "good": [1]})
    with pytest.raises(ScriptError, match=msg):
        reg.validate(P(":n.type.small"), {"code": INT_CHECK, "bad": [1.5]})
    assert not reg.types


def test_validate_good_example_failing():
    reg = TypeRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.type.int"), {"code": INT_CHECK, "good": [0, 1.5], "bad": ["x"]})
    assert str(ei.value) == "type int: good example 1.5 fails: ValueError: not an integer"


def test_validate_bad_example_passing():
    reg = TypeRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(
            P(":n.type.small"), {"code": "if value > 10: raise ValueError", "good": [0], "bad": [5]}
        )
    assert str(ei.value) == "type small: bad example 5 passes the check"


def test_validate_example_failing_the_supertype():
    reg = TypeRegistry()
    put(reg, P(":n.type.int"), INT)
    odd = {"code": "if value % 2 == 0: raise ValueError", "good": [5], "bad": [1.5]}
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.type.int.odd"), odd)
    assert str(ei.value) == (
        "type int.odd: example 1.5 fails the supertype int: ValueError: not an integer"
    )
    # a good example failing the supertype too
    odd = {"code": "if value % 2 == 0: raise ValueError", "good": [5, "x"], "bad": [4]}
    with pytest.raises(ScriptError, match="example 'x' fails the supertype int"):
        reg.validate(P(":n.type.int.odd"), odd)
    reg.validate(P(":n.type.int.odd"), {**odd, "good": [5, 7]})


def test_validate_checks_all_supertypes():
    reg = tutorial()
    small = {"code": "if value > 10: raise ValueError", "good": [1], "bad": [150]}
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.type.int.percent.small"), small)
    assert str(ei.value) == (
        "type int.percent.small: example 150 fails the supertype int.percent: "
        "ValueError: not a percentage"
    )


def test_validate_subtype_without_supertype():
    reg = TypeRegistry()
    with pytest.raises(ValueTypeError) as ei:
        reg.validate(P(":n.type.int.percent"), PERCENT)
    assert str(ei.value) == "type int is unusable: it is not defined"


def test_validate_syntax_error_names_the_line():
    reg = TypeRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(
            P(":n.type.small"),
            {"code": "if value > 10 raise ValueError\n", "good": [0], "bad": [50]},
        )
    assert str(ei.value) == "type small: invalid syntax (line 1)"
    with pytest.raises(ScriptError) as ei:
        reg.validate(
            P(":n.type.small"),
            {"code": "x = 1\ny = 2\nif value > 10\n    pass\n", "good": [0], "bad": [50]},
        )
    assert str(ei.value) == "type small: expected ':' (line 3)"


def test_validate_code_must_be_a_string():
    reg = TypeRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.type.t"), {"code": 42, "good": [0], "bad": [1]})
    assert str(ei.value) == "type t: the code must be a string, not int"
    with pytest.raises(ScriptError, match="the code must be a string, not NoneType"):
        reg.validate(P(":n.type.t"), {"good": [0], "bad": [1]})
    with pytest.raises(ClientError, match="type t: the definition must be a mapping"):
        reg.validate(P(":n.type.t"), "pass")


def test_validate_match():
    reg = TypeRegistry()
    with pytest.raises(ValueTypeError) as ei:
        reg.validate((None, "match", *QUOTA), {"type": "int"})
    assert str(ei.value) == "type int is unusable: it is not defined"
    put(reg, P(":n.type.int"), INT)
    with pytest.raises(ValueTypeError, match="type int.percent is unusable: it is not defined"):
        reg.validate((None, "match", *QUOTA), {"type": "int.percent"})
    with pytest.raises(ClientError, match=r'a type match is a mapping \{"type": NAME\}'):
        reg.validate((None, "match", *QUOTA), {"typo": "int"})
    with pytest.raises(ClientError, match="a type match is a mapping"):
        reg.validate((None, "match", *QUOTA), "int")
    with pytest.raises(ClientError, match="a type match needs a path pattern"):
        reg.validate(P(":n.match"), {"type": "int"})
    with pytest.raises(PathError, match="two '#' in a row"):
        reg.validate((None, "match", "a", "#", "#"), {"type": "int"})
    with pytest.raises(ClientError, match="a type name must be a string"):
        reg.validate((None, "match", *QUOTA), {"type": 5})
    reg.validate((None, "match", *QUOTA), {"type": "int"})


def test_validate_ignores_other_paths_and_deletes():
    reg = TypeRegistry()
    reg.validate(P(":n.type.int"), NotGiven)  # deleting is always fine
    reg.validate(P(":n.match.a"), NotGiven)
    reg.validate(P(":n.acl.x"), {"anything": 1})
    reg.validate(P("type.int"), {"code": 42})
    reg.validate(P(":n"), 1)


def test_validate_does_not_apply():
    reg = TypeRegistry()
    reg.validate(P(":n.type.int"), INT)
    assert not reg.types
    with pytest.raises(ValueTypeError):
        reg.validate(P(":n.type.int.percent"), PERCENT)


# --- apply follows the tree ------------------------------------------------------------


def test_apply_ignores_other_paths():
    reg = TypeRegistry()
    assert reg.apply(P("type.int"), INT) is False
    assert reg.apply(P(":n.type"), INT) is False
    assert reg.apply(P(":n.acl.x"), {"a": 1}) is False
    assert not reg.types
    assert not reg.matches


def test_deleting_a_type_fails_closed():
    reg = tutorial()
    assert reg.apply(P(":n.type.int.percent"), NotGiven) is True
    assert ("int", "percent") not in reg.types
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.a.quota"), 12)
    assert str(ei.value) == "type int.percent is unusable: it is not defined"
    reg.check(P("stats.a.other"), 12)
    # a missing supertype fails closed too
    reg = tutorial()
    reg.apply(P(":n.type.int"), NotGiven)
    with pytest.raises(ValueTypeError, match="type int is unusable: it is not defined"):
        reg.check(P("stats.a.quota"), 12)
    # ... until it comes back
    put(reg, P(":n.type.int"), INT)
    reg.check(P("stats.a.quota"), 12)


def test_deleting_a_match_stops_checks():
    reg = tutorial()
    assert reg.apply((None, "match", *QUOTA), NotGiven) is True
    assert not reg.matches
    reg.check(P("stats.foo.bar.quota"), 123)
    assert reg.apply((None, "match", "never", "there"), NotGiven) is True


def test_broken_stored_type_is_logged_and_fails_closed(caplog):
    reg = tutorial()
    bad = {"code": "if value > 10 raise ValueError", "good": [1], "bad": [50]}
    with caplog.at_level(logging.ERROR, logger="distkv.core.valuetypes"):
        assert reg.apply(P(":n.type.int.percent"), bad) is True  # replicated: never raises
    assert "stored type int.percent is unusable" in caplog.text
    assert ("int", "percent") not in reg.types
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.a.quota"), 12)
    assert str(ei.value) == (
        "type int.percent is unusable: type int.percent: invalid syntax (line 1)"
    )
    # fixing it makes the paths usable again
    put(reg, P(":n.type.int.percent"), PERCENT)
    reg.check(P("stats.a.quota"), 12)
    assert ("int", "percent") not in reg.broken


def test_stored_non_mapping_type_fails_closed(caplog):
    reg = tutorial()
    with caplog.at_level(logging.ERROR, logger="distkv.core.valuetypes"):
        assert reg.apply(P(":n.type.int"), "pass") is True
    assert "stored type int is unusable" in caplog.text
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("stats.a.quota"), 12)
    assert str(ei.value) == ("type int is unusable: type int: the definition must be a mapping")


def test_unreadable_match_fails_closed(caplog):
    reg = tutorial()
    with caplog.at_level(logging.ERROR, logger="distkv.core.valuetypes"):
        assert reg.apply(P(":n.match.x.#"), {"type": 5}) is True
        assert reg.apply(P(":n.match.y.#"), "int") is True
    assert "stored type match x.# is unusable" in caplog.text
    assert "stored type match y.# is unusable" in caplog.text
    with pytest.raises(ValueTypeError) as ei:
        reg.check(P("x.a"), 1)
    assert str(ei.value) == "x.a: the type bound to x.# is unreadable"
    with pytest.raises(ValueTypeError, match="y: the type bound to y.# is unreadable"):
        reg.check(P("y"), 1)


def test_apply_replaces_a_type():
    reg = tutorial()
    reg.apply(P(":n.type.int.percent"), {"code": "if value > 50: raise ValueError('big')"})
    reg.check(P("stats.a.quota"), 50)
    with pytest.raises(ValueTypeError, match="51 is not a valid int.percent: ValueError: big"):
        reg.check(P("stats.a.quota"), 51)


# --- known gaps: apply() must never raise on replicated data -----------------------------


def test_apply_never_raises_on_non_list_examples():
    reg = TypeRegistry()
    assert reg.apply(P(":n.type.x"), {"code": "pass", "good": 5}) is True


def test_apply_never_raises_on_non_string_type_name():
    reg = TypeRegistry()
    assert reg.apply((None, "type", 1), {"code": "pass"}) is True


def test_apply_never_raises_on_bad_match_pattern():
    reg = TypeRegistry()
    assert reg.apply((None, "match", "a", "#", "#"), {"type": "int"}) is True
