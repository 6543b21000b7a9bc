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
granted). An endless loop in stored code stalls the node; keep checks short.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from ..exceptions import ClientError, ScriptError

__all__ = ["compile_script", "def_name", "describe_error", "fmt_name"]


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
    return ".".join(name)


def compile_script(code: Any, what: str, params: tuple[str, ...] = ("value",)) -> Callable:
    """Compile the script body ``code`` into a function of ``params``.

    ``what`` names the script in errors ("type int", "codec float.str encode").
    """
    if not isinstance(code, str):
        raise ScriptError(f"{what}: the code must be a string, not {type(code).__name__}")
    body = textwrap.dedent(code).strip("\n")
    if not body.strip():
        body = "pass"
    src = f"def _script({', '.join(params)}):\n{textwrap.indent(body, '    ')}\n"
    try:
        compiled = compile(src, f"<{what}>", "exec")
    except SyntaxError as exc:
        line = (exc.lineno or 2) - 1
        raise ScriptError(f"{what}: {exc.msg} (line {line})") from None
    except ValueError as exc:  # e.g. NUL bytes in the source
        raise ScriptError(f"{what}: {exc}") from None
    namespace: dict[str, Any] = {}
    exec(compiled, namespace)  # noqa: S102 - defines _script, runs nothing else
    return namespace["_script"]


def describe_error(exc: BaseException) -> str:
    """``ValueError: not an integer``: what a user needs from a failing script."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
