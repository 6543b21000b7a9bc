"""Stored code cannot stop, stall or crash a node (issue #15, item 5): ``exit()`` and
endless loops in a type check or codec are reported as that type's (codec's) error."""

import time

import pytest

from distkv.core.script import compile_script, run_script
from distkv.core.valuetypes import TypeDef
from distkv.exceptions import ScriptError, ValueTypeError
from distkv.testing.server import make_config, open_memory_client, open_test_server
from distkv.util import P, Path

EVIL = {
    # passes its examples, then ends the server on 666 / loops for ever on 777
    "code": (
        "if not isinstance(value, int): raise ValueError('not an int')\n"
        "if value == 666: exit()\n"
        "if value == 777:\n"
        "    while True:\n"
        "        pass\n"
        "if value == 888: raise SystemExit(3)\n"
    ),
    "good": [1, 2],
    "bad": ["x"],
}


async def test_exit_and_endless_loop_in_a_type_check_are_that_types_error():
    cfg = make_config(server={"limits": {"script_ms": 100}})
    async with open_test_server(cfg=cfg) as s, open_memory_client(s) as c:
        await c.set(Path(None, "type", "evil"), EVIL)
        await c.set(Path(None, "match", "e", "#"), {"type": "evil"})
        with pytest.raises(ValueTypeError, match=r"not a valid evil: .*SystemExit"):
            await c.set(P("e.x"), 666)
        with pytest.raises(ValueTypeError, match=r"not a valid evil: .*SystemExit: 3"):
            await c.set(P("e.x"), 888)
        t0 = time.monotonic()
        with pytest.raises(ValueTypeError, match=r"not a valid evil: .*budget of 100 ms"):
            await c.set(P("e.x"), 777)
        assert time.monotonic() - t0 < 2
        await c.set(P("e.x"), 5)  # the node and the connection go on
        assert (await c.get(P("e.x"))).value == 5


async def test_codec_that_exits_or_loops():
    cfg = make_config(server={"limits": {"script_ms": 100}})
    async with open_test_server(cfg=cfg) as s, open_memory_client(s) as c:
        with pytest.raises(ScriptError, match="SystemExit"):
            await c.set(
                Path(None, "codec", "bad"),
                {"encode": "exit()", "decode": "return value", "in": [[1, 1]], "out": [[1, 1]]},
            )
        with pytest.raises(ScriptError, match="budget"):
            await c.set(
                Path(None, "codec", "bad"),
                {"encode": "while 1: pass", "decode": "return value", "in": [[1, 1]], "out": [[1, 1]]},
            )
        assert (await c.get(Path(None, "codec", "bad"))).get("value") is None


def test_a_loop_that_catches_exception_is_still_stopped():
    fn = compile_script(
        "while True:\n    try:\n        pass\n    except Exception:\n        pass", "type t"
    )
    with pytest.raises(ScriptError, match="budget of 50 ms"):
        run_script(fn, 1, 0.05)


def test_compile_never_raises_more_than_a_script_error():
    for code in ["-" * 200_000 + "1", "(" * 100_000, "[" * 5000 + "]" * 5000]:
        with pytest.raises(ScriptError):
            compile_script(code, "type deep")


def test_budget_overhead_is_small():
    """What the budget costs a normal check (measured: ~3 us per call on the dev box)."""
    t = TypeDef(("int",), {"code": "if value < 0: raise ValueError('neg')", "good": [1], "bad": [-1]})
    n = 2000
    t0 = time.process_time()
    for _ in range(n):
        assert t.passes(5) is None
    per_call = (time.process_time() - t0) / n
    assert per_call < 100e-6
