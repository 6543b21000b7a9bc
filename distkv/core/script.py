"""Stored code: a script body from the tree, compiled into a function (pure).

Type checks and codecs are stored as the *body* of a function of ``value``, exactly as
the user typed it::

    if int(value) != value: raise ValueError("not an integer")

or ``return str(value)``. :func:`compile_script` wraps the body in a ``def`` and
compiles it, so a syntax error is reported when the code is stored, with the line
number the user sees.

Trust: the code runs inside the server with full builtins. That is safe only because
of who may store it: writing below ``.distkv type`` / ``.distkv codec`` needs the
rights an ACL grants on those system paths (and with ACLs on, nobody has them unless
granted). Mistakes must still not take the node down, so every call goes through
:func:`run_script`: ``exit()``, ``SystemExit`` or any other ``BaseException`` becomes
that script's error, and a call that runs past its time budget is stopped (a trace
function checks the clock on every line the script runs) and reported as its error.
What a budget cannot stop is one C call that never returns (``sum(range(10**15))``)
or code that deliberately catches ``BaseException`` in a loop; those need code rights,
which are for administrators.
"""

from __future__ import annotations

import builtins
import sys
import textwrap
import time
import types
from collections.abc import Callable
from typing import Any

from ..exceptions import ClientError, ScriptError

__all__ = [
    "DEFAULT_BUDGET",
    "ScriptTimeout",
    "compile_script",
    "def_name",
    "describe_error",
    "fmt_name",
    "run_script",
    "with_globals",
]

#: Seconds one call of a stored type check or codec may run (``server.limits.script_ms``).
DEFAULT_BUDGET = 0.2


class ScriptTimeout(BaseException):
    """Raised inside stored code that ran past its budget. A ``BaseException`` so that
    the script's own ``except Exception`` does not swallow it."""


class ScriptStopped(ScriptError):
    """What :func:`run_script` raises for a ``BaseException`` (its message says which)."""


def run_script(fn: Callable, arg: Any, budget: float = DEFAULT_BUDGET) -> Any:
    """``fn(arg)`` for stored code: whatever it raises comes out as an ``Exception``
    (:class:`ScriptStopped` for ``exit()``/``BaseException``, with the budget in the
    message when it ran too long), never as something that ends the server."""
    deadline = time.monotonic() + budget
    clock = time.monotonic

    def line(frame, event, _arg):
        if clock() > deadline:
            raise ScriptTimeout(f"ran longer than its budget of {budget * 1000:g} ms")
        return line

    def call(frame, event, _arg):
        # opcode events too: a one-line loop (``while 1: pass``) has no line events
        frame.f_trace_opcodes = True
        if clock() > deadline:
            raise ScriptTimeout(f"ran longer than its budget of {budget * 1000:g} ms")
        return line

    prev = sys.gettrace()
    sys.settrace(call)
    try:
        return fn(arg)
    except Exception:
        raise
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # exit(), SystemExit, ScriptTimeout, ...
        raise ScriptStopped(describe_error(exc)) from None
    finally:
        sys.settrace(prev)


def def_name(name: Any, what: str) -> tuple:
    """The name of a stored definition (a type, a codec): ``"int.percent"``, a tuple
    or a list, as a tuple of strings. ``what`` names the kind in errors."""
    if isinstance(name, str):
        parts = tuple(name.split("."))
    elif isinstance(name, list | tuple):
        parts = tuple(name)
    else:
        raise ClientError(f"a {what} name must be a string, not {type(name).__name__}")
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ClientError(f"bad {what} name {name!r}")
    return parts


def fmt_name(name: tuple) -> str:
    """``("int", "percent")`` -> ``int.percent``."""
    return ".".join(map(str, name))


def compile_script(
    code: Any, what: str, params: tuple[str, ...] = ("value",), is_async: bool = False
) -> Callable:
    """Compile the script body ``code`` into a function of ``params``.

    ``what`` names the script in errors ("type int", "codec float.str encode").
    ``is_async``: an ``async def`` (runner code, which may ``await`` the client).
    """
    if not isinstance(code, str):
        raise ScriptError(f"{what}: the code must be a string, not {type(code).__name__}")
    body = textwrap.dedent(code).rstrip()  # leading blank lines keep line numbers right
    if not body.strip():
        body = "pass"
    head = "async def" if is_async else "def"
    src = f"{head} _script({', '.join(params)}):\n{textwrap.indent(body, '    ')}\n"
    try:
        compiled = compile(src, f"<{what}>", "exec")
    except SyntaxError as exc:
        line = (exc.lineno or 2) - 1
        raise ScriptError(f"{what}: {exc.msg} (line {line})") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, deep nesting
        raise ScriptError(f"{what}: {describe_error(exc)}") from None
    namespace: dict[str, Any] = {}
    exec(compiled, namespace)  # noqa: S102 - defines _script, runs nothing else
    return namespace["_script"]


def examples(value: Any, key: str, what: str) -> list:
    """The list of examples stored under ``key`` (missing: empty)."""
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list | tuple):
        raise ClientError(f"{what}: {key!r} must be a list of examples")
    return list(items)


def with_globals(fn: Callable, names: dict[str, Any]) -> Callable:
    """``fn`` seeing ``names`` as global variables (a job's data, its client), so
    stored code can use them by their bare names."""
    return types.FunctionType(fn.__code__, {"__builtins__": builtins, **names}, fn.__name__)


def describe_error(exc: BaseException) -> str:
    """``ValueError: not an integer``: what a user needs from a failing script."""
    text = str(exc)
    if type(exc) is ScriptStopped:  # already described by run_script
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
