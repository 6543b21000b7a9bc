"""The tutorial's "Verification" and "Data mangling" sections, as printed."""

import pytest

from distkv.testing.process import fails, ok

pytestmark = pytest.mark.slow

DKV = 'dkv() { distkv client "$@"; }; '


INT_CHECK = 'if int(value) != value: raise ValueError("not an integer")\n'
PERCENT_CHECK = 'if not (0 <= value <= 100): raise ValueError("not a percentage")\n'


def test_verification(server):
    server.start("-i", "Testing")
    ok(
        server.run(
            DKV + "dkv type set -g 0 -g -2 -g 123 -b 1.2 -b '\"Hello\"' int", input=INT_CHECK
        )
    )
    ok(
        server.run(
            DKV + "dkv type set -g 0 -g 99 -g 100 -b -1 -b 101 int.percent", input=PERCENT_CHECK
        )
    )
    ok(server.run(DKV + "dkv type match -t int.percent 'stats.#.quota'"))
    fails(
        server.run(DKV + "dkv data stats.foo.bar.quota set -v : 123"),
        "ValueTypeError: stats.foo.bar.quota: '123' is not a valid int: ValueError: not an integer",
    )
    fails(
        server.run(DKV + "dkv data stats.foo.bar.quota set -e : 123"),
        "ValueTypeError: stats.foo.bar.quota: 123 is not a valid int.percent:"
        " ValueError: not a percentage",
    )
    assert ok(server.run(DKV + "dkv data stats.foo.bar.quota set -e : 12")) == ""
    assert ok(server.run(DKV + "dkv data stats.foo.bar.quota")) == "12\n"
    # other paths are not affected
    ok(server.run(DKV + "dkv data stats.foo.bar.other set -v : 123"))

    # "The example values, both good and bad, must pass the supertype's checks."
    fails(
        server.run(DKV + "dkv type set -g 5 -b 1.5 int.odd", input="if value % 2 == 0: raise ValueError\n"),
        "ScriptError: type int.odd: example 1.5 fails the supertype int: ValueError: not an integer",
    )  # fmt: skip
    # examples that contradict the check, and code that does not compile
    fails(
        server.run(DKV + "dkv type set -g 0 -b 5 small", input="if value > 10: raise ValueError\n"),
        "ScriptError: type small: bad example 5 passes the check",
    )
    fails(
        server.run(DKV + "dkv type set -g 0 -b 50 small", input="if value > 10 raise ValueError\n"),
        "ScriptError: type small: invalid syntax (line 1)",
    )
    res = server.run(DKV + "dkv type set small", input="pass\n")
    assert res.returncode == 2 and "good and bad examples" in res.stderr
    out = ok(server.run(DKV + "dkv type list"))
    assert out == "types:\n- int\n- int.percent\nmatches:\n  stats.#.quota: int.percent\n"

    out = ok(server.run(DKV + "dkv type get int.percent"))
    assert out == f"code: |\n  {PERCENT_CHECK}good:\n- 0\n- 99\n- 100\nbad:\n- -1\n- 101\n"
    fails(server.run(DKV + "dkv type get int.nope"), "NoDataError: no type int.nope")
    ok(server.run(DKV + "dkv type delete int.percent"))
    fails(server.run(DKV + "dkv type delete int.percent"), "NoDataError: no type int.percent")
    # a match whose type is gone fails closed
    fails(
        server.run(DKV + "dkv data stats.foo.bar.quota set -e : 12"),
        "ValueTypeError: type int.percent is unusable: it is not defined",
    )

    # types live in the tree: they survive as data, and go away with it
    ok(server.run(DKV + "dkv type match -d 'stats.#.quota'"))
    ok(server.run(DKV + "dkv data stats.foo.bar.quota set -e : 123"))


def test_data_mangling(server):
    server.start("-i", "Testing")
    out = ok(
        server.run(
            DKV + "dkv codec set -i '\"12.5\"' 12.5 -o 13.25 '\"13.25\"' float.str",
            input="return str(value)\n---\nreturn float(value)\n",
        )
    )
    ok(server.run(DKV + "dkv codec convert -c float.str floatval 'monitor.#.value'"))
    ok(server.run(DKV + "dkv auth -m _test user add name=joe"))
    ok(server.run(DKV + "dkv auth -m _test user add name=admin"))
    ok(server.run(DKV + "dkv auth -m _test user modify --aux codec=floatval name=joe"))
    ok(server.run(DKV + "dkv auth -m _test init"))
    joe = DKV + "dkv -a '_test name=joe' "
    admin = DKV + "dkv -a '_test name=admin' "

    # Joe writes strings; `value` entries are stored as floats, others as they come
    ok(server.run(joe + "data monitor.a.b.c.value set -v : 99.5"))
    ok(server.run(joe + "data monitor.a.b.c.thing set -v : 12.3"))
    out = ok(server.run(admin + "data monitor get -rd_"))
    assert (
        out == "a:\n  b:\n    c:\n      thing:\n        _: '12.3'\n      value:\n        _: 99.5\n"
    )
    # ... and reads them as strings
    assert ok(server.run(joe + "data monitor.a.b.c.value")) == '"99.5"\n'
    ok(server.run(admin + "data monitor.x.value set -e : 7.25"))
    assert ok(server.run(joe + "data monitor.x.value")) == '"7.25"\n'
    # what the codec cannot decode is refused, nothing is stored
    fails(
        server.run(joe + "data monitor.x.value set -v : warm"),
        "ValueTypeError: monitor.x.value: codec float.str cannot decode 'warm':"
        " ValueError: could not convert string to float: 'warm'",
    )
    assert ok(server.run(admin + "data monitor.x.value")) == "7.25\n"

    # a codec whose examples do not hold is refused
    fails(
        server.run(
            admin + "codec set -i '\"1\"' 1 -o 1 '\"1\"' int.str",
            input="return str(value)\n---\nreturn float(value)\n",
        ),
        "ScriptError: codec int.str: decode of '1' gives 1.0, the example says 1",
    )
    assert "float.str" in ok(server.run(admin + "codec list"))
    assert "decode: |\n  return float(value)\nin:\n" in ok(
        server.run(admin + "codec get float.str")
    )
    assert (
        ok(server.run(admin + "codec convert floatval"))
        == "monitor.#.value:\n  codec:\n  - float\n  - str\n"
    )
