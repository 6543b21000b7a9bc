"""Codecs and converters (pure; see distkv/core/codecs.py)."""

from __future__ import annotations

import logging

import pytest

from distkv.core.codecs import Codec, CodecRegistry, codec_name
from distkv.core.types import NotGiven
from distkv.exceptions import ClientError, PathError, ScriptError, ValueTypeError
from distkv.util import P

FLOAT_STR = {
    "encode": "return str(value)",
    "decode": "return float(value)",
    "in": [["12.5", 12.5]],
    "out": [[13.25, "13.25"]],
}
CONV_PATH = (None, "conv", "floatval", "monitor", "#", "value")


def put(reg: CodecRegistry, path, value) -> None:
    """A local write: validate, then apply (as the server does)."""
    path = tuple(path)
    reg.validate(path, value)
    assert reg.apply(path, value) is True


def tutorial() -> CodecRegistry:
    reg = CodecRegistry()
    put(reg, P(":n.codec.float.str"), FLOAT_STR)
    put(reg, CONV_PATH, {"codec": ["float", "str"]})
    return reg


# --- the tutorial ----------------------------------------------------------------------


def test_tutorial_codec_converts_matching_paths():
    reg = tutorial()
    assert set(reg.codecs) == {("float", "str")}
    conv = reg.converter("floatval")
    assert conv is not None
    got = conv.decode(P("monitor.a.b.c.value"), "99.5")
    assert got == 99.5 and type(got) is float
    assert conv.encode(P("monitor.a.b.c.value"), 99.5) == "99.5"
    assert conv.encode(P("monitor.value"), 7.25) == "7.25"
    assert conv.decode(P("monitor.x.value"), "7") == 7.0


def test_tutorial_codec_passes_other_paths_unchanged():
    conv = tutorial().converter("floatval")
    for path in ("monitor.a.b.c.thing", "monitor.value.x", "other.value", "monitor"):
        assert conv.decode(P(path), "12.3") == "12.3"
        assert conv.encode(P(path), "12.3") == "12.3"
        assert conv.encode(P(path), 12.5) == 12.5
    assert conv.decode(P(":n.monitor.value"), "1") == "1"
    marker = object()
    assert conv.decode(P("x"), marker) is marker


def test_decode_failure():
    conv = tutorial().converter("floatval")
    with pytest.raises(ValueTypeError) as ei:
        conv.decode(P("monitor.x.value"), "warm")
    assert str(ei.value) == (
        "monitor.x.value: codec float.str cannot decode 'warm':"
        " ValueError: could not convert string to float: 'warm'"
    )


def test_encode_failure():
    reg = tutorial()
    put(
        reg,
        P(":n.codec.strict"),
        {
            "encode": "if value is None: raise TypeError('no None')\nreturn value",
            "decode": "return value",
            "in": [[1, 1]],
            "out": [[2, 2]],
        },
    )
    put(reg, (None, "conv", "floatval", "strict"), {"codec": "strict"})
    with pytest.raises(ValueTypeError) as ei:
        reg.converter("floatval").encode(P("strict"), None)
    assert str(ei.value) == "strict: codec strict cannot encode None: TypeError: no None"


def test_no_converter_name_means_no_translation():
    reg = tutorial()
    assert reg.converter(None) is None
    conv = reg.converter(5)  # names are strings, as in aux
    assert conv.name == "5"


def test_codec_name():
    assert codec_name("float.str") == ("float", "str")
    assert codec_name(["float", "str"]) == ("float", "str")
    with pytest.raises(ClientError, match="a codec name must be a string, not int"):
        codec_name(3)
    with pytest.raises(ClientError, match="bad codec name"):
        codec_name("float.")
    with pytest.raises(ClientError, match="bad codec name"):
        codec_name(())


# --- Codec.verify and validate ----------------------------------------------------------


def test_validate_accepts_the_tutorial_codec_without_applying():
    reg = CodecRegistry()
    reg.validate(P(":n.codec.float.str"), FLOAT_STR)
    assert not reg.codecs
    Codec(("float", "str"), FLOAT_STR).verify()


def test_validate_wrong_examples():
    reg = CodecRegistry()
    bad_in = {**FLOAT_STR, "in": [["12.5", 12.25]]}
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.codec.float.str"), bad_in)
    assert str(ei.value) == "codec float.str: decode of '12.5' gives 12.5, the example says 12.25"
    bad_out = {**FLOAT_STR, "out": [[13.25, "13.250"]]}
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.codec.float.str"), bad_out)
    assert str(ei.value) == (
        "codec float.str: encode of 13.25 gives '13.25', the example says '13.250'"
    )


def test_validate_is_type_strict():
    reg = CodecRegistry()
    int_str = {**FLOAT_STR, "in": [["1", 1]], "out": [[1, "1"]]}
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.codec.int.str"), int_str)
    assert str(ei.value) == "codec int.str: decode of '1' gives 1.0, the example says 1"
    # True == 1 as well, but is not what the example says
    to_int = {
        "encode": "return int(value)",
        "decode": "return value",
        "in": [[1, 1]],
        "out": [[True, True]],
    }
    with pytest.raises(ScriptError, match="encode of True gives 1, the example says True"):
        reg.validate(P(":n.codec.to.int"), to_int)
    reg.validate(P(":n.codec.to.int"), {**to_int, "out": [[True, 1]]})


def test_validate_needs_examples_both_ways():
    reg = CodecRegistry()
    msg = r"codec float.str needs examples both ways \(-i SOURCE RESULT, -o SOURCE RESULT\)"
    for missing in ("in", "out"):
        value = {k: v for k, v in FLOAT_STR.items() if k != missing}
        with pytest.raises(ScriptError, match=msg):
            reg.validate(P(":n.codec.float.str"), value)
    with pytest.raises(ScriptError, match=msg):
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "in": []})


def test_validate_example_pairs_must_be_pairs():
    reg = CodecRegistry()
    with pytest.raises(ClientError, match=r"codec float.str: 'in' examples are \[source, result\]"):
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "in": [["12.5"]]})
    with pytest.raises(ClientError, match="'out' examples are"):
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "out": ["13.25"]})


def test_validate_code_raising_on_an_example():
    reg = CodecRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "in": [["x", 1.0]]})
    assert str(ei.value) == (
        "codec float.str: decode of 'x' fails: ValueError: could not convert string to float: 'x'"
    )
    with pytest.raises(ScriptError) as ei:
        reg.validate(
            P(":n.codec.float.str"), {**FLOAT_STR, "encode": "raise KeyError", "out": [[1.0, "1"]]}
        )
    assert str(ei.value) == "codec float.str: encode of 1.0 fails: KeyError"


def test_validate_code_errors():
    reg = CodecRegistry()
    with pytest.raises(ScriptError) as ei:
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "decode": "x = 1\nreturn float(value"})
    assert str(ei.value) == "codec float.str decode: '(' was never closed (line 2)"
    with pytest.raises(ScriptError, match="codec float.str encode: the code must be a string"):
        reg.validate(P(":n.codec.float.str"), {**FLOAT_STR, "encode": None})
    with pytest.raises(ClientError, match="codec float.str: the definition must be a mapping"):
        reg.validate(P(":n.codec.float.str"), ["return value"])
    with pytest.raises(ClientError, match="bad codec name"):
        reg.validate(P(":n.codec"), FLOAT_STR)


def test_validate_converter():
    reg = CodecRegistry()
    with pytest.raises(ClientError) as ei:
        reg.validate(CONV_PATH, {"codec": "float.str"})
    assert str(ei.value) == "codec float.str does not exist"
    put(reg, P(":n.codec.float.str"), FLOAT_STR)
    reg.validate(CONV_PATH, {"codec": "float.str"})
    with pytest.raises(ClientError, match="codec float.int does not exist"):
        reg.validate(CONV_PATH, {"codec": ["float", "int"]})
    with pytest.raises(ClientError, match=r'a converter entry is a mapping \{"codec": NAME\}'):
        reg.validate(CONV_PATH, {"type": "float.str"})
    with pytest.raises(ClientError, match="a converter entry is a mapping"):
        reg.validate(CONV_PATH, "float.str")
    with pytest.raises(ClientError, match="a codec name must be a string"):
        reg.validate(CONV_PATH, {"codec": 1})


def test_validate_converter_paths():
    reg = tutorial()
    good = {"codec": "float.str"}
    msg = r"a converter entry is \.distkv conv NAME PATTERN\.\.\."
    with pytest.raises(ClientError, match=msg):
        reg.validate(P(":n.conv.floatval"), good)  # no pattern
    with pytest.raises(ClientError, match=msg):
        reg.validate(P(":n.conv"), good)
    with pytest.raises(ClientError, match=msg):
        reg.validate((None, "conv", 5, "a"), good)  # the name is not a string
    with pytest.raises(PathError, match="two '#' in a row"):
        reg.validate((None, "conv", "floatval", "a", "#", "#"), good)
    with pytest.raises(PathError, match="None may only be the first element"):
        reg.validate((None, "conv", "floatval", "a", None), good)
    reg.validate((None, "conv", "floatval", "#"), good)
    reg.validate((None, "conv", "floatval", None, "auth", "#"), good)  # system paths


def test_validate_ignores_deletes_and_other_paths():
    reg = CodecRegistry()
    reg.validate(P(":n.codec.float.str"), NotGiven)
    reg.validate(CONV_PATH, NotGiven)
    reg.validate(P(":n.type.int"), {"code": 1})
    reg.validate(P("codec.x"), 1)
    reg.validate(P(":n"), 1)


# --- fail closed -----------------------------------------------------------------------


def test_unknown_converter_fails_closed():
    reg = tutorial()
    conv = reg.converter("nosuch")
    for path in ("monitor.a.value", "other"):
        with pytest.raises(ValueTypeError) as ei:
            conv.decode(P(path), "1")
        assert str(ei.value) == "converter 'nosuch' (the user's codec) does not exist"
        with pytest.raises(ValueTypeError, match="converter 'nosuch'"):
            conv.encode(P(path), 1.0)


def test_deleted_codec_fails_closed():
    reg = tutorial()
    conv = reg.converter("floatval")
    assert reg.apply(P(":n.codec.float.str"), NotGiven) is True
    assert not reg.codecs
    with pytest.raises(ValueTypeError) as ei:
        conv.decode(P("monitor.a.value"), "1.5")
    assert str(ei.value) == (
        "monitor.a.value: the codec bound to monitor.#.value is unusable: it is not defined"
    )
    with pytest.raises(ValueTypeError, match="it is not defined"):
        conv.encode(P("monitor.a.value"), 1.5)
    assert conv.decode(P("monitor.a.other"), "1.5") == "1.5"  # not bound: unaffected
    # it comes back
    put(reg, P(":n.codec.float.str"), FLOAT_STR)
    assert conv.decode(P("monitor.a.value"), "1.5") == 1.5


def test_broken_stored_codec_is_logged_and_fails_closed(caplog):
    reg = tutorial()
    broken = {**FLOAT_STR, "decode": "return float(value"}
    with caplog.at_level(logging.ERROR, logger="distkv.core.codecs"):
        assert reg.apply(P(":n.codec.float.str"), broken) is True  # never raises
    assert "stored codec float.str is unusable" in caplog.text
    with pytest.raises(ValueTypeError) as ei:
        reg.converter("floatval").decode(P("monitor.value"), "1")
    assert str(ei.value) == (
        "monitor.value: the codec bound to monitor.#.value is unusable: "
        "codec float.str decode: '(' was never closed (line 1)"
    )
    put(reg, P(":n.codec.float.str"), FLOAT_STR)
    assert ("float", "str") not in reg.broken
    assert reg.converter("floatval").decode(P("monitor.value"), "1") == 1.0


def test_unreadable_converter_entry_fails_closed(caplog):
    reg = tutorial()
    with caplog.at_level(logging.ERROR, logger="distkv.core.codecs"):
        assert reg.apply((None, "conv", "floatval", "raw", "#"), {"codec": 5}) is True
        assert reg.apply((None, "conv", "floatval", "txt"), "float.str") is True
    assert "stored converter floatval raw.# is unusable" in caplog.text
    assert "stored converter floatval txt is unusable" in caplog.text
    conv = reg.converter("floatval")
    with pytest.raises(ValueTypeError) as ei:
        conv.decode(P("raw.x"), "1")
    assert str(ei.value) == "raw.x: the codec bound to raw.# is unusable: unreadable"
    with pytest.raises(ValueTypeError, match="txt: the codec bound to txt is unusable"):
        conv.encode(P("txt"), 1.0)
    assert conv.decode(P("monitor.value"), "2") == 2.0


def test_apply_ignores_other_paths():
    reg = CodecRegistry()
    assert reg.apply(P(":n.acl.x"), {}) is False
    assert reg.apply(P(":n.codec"), FLOAT_STR) is False
    assert reg.apply(P("codec.float.str"), FLOAT_STR) is False
    assert reg.apply((None, "conv", 5, "a"), {"codec": "float.str"}) is False
    assert not reg.codecs
    assert not reg.convs


def test_converter_entries_deleted_one_by_one():
    reg = tutorial()
    put(reg, (None, "conv", "floatval", "temp", "+"), {"codec": "float.str"})
    conv = reg.converter("floatval")
    assert conv.decode(P("temp.x"), "3") == 3.0
    assert conv.decode(P("monitor.value"), "4") == 4.0

    assert reg.apply((None, "conv", "floatval", "temp", "+"), NotGiven) is True
    assert "floatval" in reg.convs
    assert conv.decode(P("temp.x"), "3") == "3"
    assert conv.decode(P("monitor.value"), "4") == 4.0
    # deleting an entry that is not there changes nothing
    assert reg.apply((None, "conv", "floatval", "nope"), NotGiven) is True
    assert reg.apply((None, "conv", "otherconv", "nope"), NotGiven) is True
    assert set(reg.convs) == {"floatval"}
    assert conv.decode(P("monitor.value"), "4") == 4.0

    assert reg.apply(CONV_PATH, NotGiven) is True
    assert "floatval" not in reg.convs  # empty: gone
    with pytest.raises(ValueTypeError, match="converter 'floatval' .* does not exist"):
        conv.decode(P("monitor.value"), "4")
    # and it can be created again
    put(reg, CONV_PATH, {"codec": "float.str"})
    assert conv.decode(P("monitor.value"), "4") == 4.0


def test_converters_are_separate():
    reg = tutorial()
    put(
        reg,
        P(":n.codec.ident"),
        {"encode": "return value", "decode": "return value", "in": [[1, 1]], "out": [[2, 2]]},
    )
    put(reg, (None, "conv", "plain", "monitor", "#", "value"), {"codec": "ident"})
    assert reg.converter("plain").decode(P("monitor.value"), "1.5") == "1.5"
    assert reg.converter("floatval").decode(P("monitor.value"), "1.5") == 1.5


def test_most_specific_converter_entry_wins():
    reg = tutorial()
    put(
        reg,
        P(":n.codec.ident"),
        {"encode": "return value", "decode": "return value", "in": [[1, 1]], "out": [[2, 2]]},
    )
    put(reg, (None, "conv", "floatval", "monitor", "raw", "value"), {"codec": "ident"})
    conv = reg.converter("floatval")
    assert conv.decode(P("monitor.raw.value"), "1.5") == "1.5"
    assert conv.decode(P("monitor.cooked.value"), "1.5") == 1.5


# --- known gaps: apply() must never raise on replicated data -----------------------------


def test_apply_never_raises_on_non_list_examples():
    reg = CodecRegistry()
    assert reg.apply(P(":n.codec.x"), {**FLOAT_STR, "in": 5}) is True


def test_apply_never_raises_on_non_string_codec_name():
    reg = CodecRegistry()
    assert reg.apply((None, "codec", 1), FLOAT_STR) is True


def test_apply_never_raises_on_bad_converter_pattern():
    reg = CodecRegistry()
    assert reg.apply((None, "conv", "x", "#", "#"), {"codec": "float.str"}) is True
