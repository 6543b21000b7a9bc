"""``distkv client type|codec``: value types (verification) and codecs (data mangling).

Both store Python script bodies that the server compiles and checks against the
examples given here; see :mod:`distkv.core.valuetypes` and :mod:`distkv.core.codecs`.
"""

from __future__ import annotations

import ast
import sys

import trio

from ..client import open_client
from ..core.codecs import CODEC_ROOT, CONV_ROOT, codec_name
from ..core.path import P, Path
from ..core.valuetypes import MATCH_ROOT, TYPE_ROOT, type_name
from ..exceptions import ClientError, NoDataError, ValueTypeError
from .main import ArgParser, UsageError
from .output import yprint


def _literal(raw: str):
    """An example value, written as a Python literal (``'"Hello"'``, ``12.5``)."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        if str(exc).startswith("malformed node"):  # ast's text names an object address
            raise ValueTypeError(
                f"cannot evaluate example {raw!r}: not a Python literal (text needs quotes: "
                "'\"text\"')"
            ) from None
        raise ValueTypeError(
            f"cannot evaluate example {raw!r} (strings need quotes: '\"text\"'): {exc}"
        ) from None


def read_file(fn: str) -> str:
    if fn == "-":
        return sys.stdin.read()
    try:
        with open(fn) as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {fn}: {exc.strerror}") from None


def read_scripts(prompts: list[str]) -> list[str]:
    """Scripts from standard input: on a terminal each one ends with Ctrl-D; from a
    pipe or file they are separated by a line ``---``."""
    if sys.stdin.isatty():
        out = []
        for prompt in prompts:
            print(prompt, file=sys.stderr, flush=True)
            out.append(sys.stdin.read())
        return out
    text = sys.stdin.read()
    if len(prompts) == 1:
        return [text]
    parts: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.strip() == "---":
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) != len(prompts):
        raise UsageError(
            f"expected {len(prompts)} scripts on standard input separated by a line '---',"
            f" got {len(parts)}"
        )
    return ["".join(p) for p in parts]


def add_get_list_delete(sub, what: str, listing: str, arg: str = "name") -> None:
    """The ``get``, ``list`` and ``delete`` subcommands that types, codecs and code
    share."""
    sub.add_parser("get", help=f"show a {what}").add_argument(arg)
    sub.add_parser("list", help=f"list {listing}")
    sub.add_parser("delete", help=f"delete a {what}").add_argument(arg)


def _name_path(root: tuple, name: tuple) -> Path:
    return Path(*root, *name)


async def _get_def(client, root: tuple, name: tuple, label: str) -> None:
    res = await client.get(_name_path(root, name))
    if "value" not in res:
        raise NoDataError(f"no {label} {'.'.join(name)}")
    yprint(res.value)


async def _delete_def(client, root: tuple, name: tuple, label: str) -> None:
    res = await client.delete(_name_path(root, name))
    if not res.changed:
        raise NoDataError(f"no {label} {'.'.join(name)}")


async def _show_tree(client, base: Path, empty: str) -> None:
    out = {}
    async for r in client.get_tree(base):
        out[str(r.path)] = r.value
    if not out:
        raise NoDataError(empty)
    yprint(out)


# --- type ---


def type_parser() -> ArgParser:
    p = ArgParser(
        prog="distkv client type",
        description="Value types: checks that values written to matching paths must pass.",
    )
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser(
        "set",
        help="define type NAME (a.b = subtype b of a); the check script comes from"
        " standard input (or --script FILE): it raises to reject 'value'",
    )
    s.add_argument("-g", "--good", action="append", default=[], metavar="VALUE")
    s.add_argument("-b", "--bad", action="append", default=[], metavar="VALUE")
    s.add_argument("-s", "--script", metavar="FILE", help="read the check from FILE")
    s.add_argument("name")
    add_get_list_delete(sub, "type", "the types and what they match")
    m = sub.add_parser(
        "match", help="bind a type to a path pattern: match -t NAME PATTERN (+ one, # any)"
    )
    m.add_argument("-t", "--type", help="the type name")
    m.add_argument("-d", "--delete", action="store_true", help="remove the binding")
    m.add_argument("pattern")
    return p


def run_type(cfg: dict, args: list[str]) -> int:
    a = type_parser().parse_args(args)
    return trio.run(_type, cfg, a)


async def _type(cfg: dict, a) -> int:
    if a.op == "set":
        name = type_name(a.name)
        if not a.good or not a.bad:
            raise UsageError("a type needs good and bad examples: -g VALUE ... -b VALUE ...")
        code = (
            read_file(a.script)
            if a.script
            else read_scripts(["Enter the Python script to check 'value'."])[0]
        )
        record = {
            "code": code,
            "good": [_literal(x) for x in a.good],
            "bad": [_literal(x) for x in a.bad],
        }
    async with open_client(cfg) as client:
        if a.op == "set":
            await client.set(_name_path(TYPE_ROOT, name), record)
        elif a.op == "get":
            await _get_def(client, TYPE_ROOT, type_name(a.name), "type")
        elif a.op == "delete":
            await _delete_def(client, TYPE_ROOT, type_name(a.name), "type")
        elif a.op == "list":
            types = {".".join(map(str, r.path)): r.value.get("good") async for r in
                     client.get_tree(Path(*TYPE_ROOT))}  # fmt: skip
            matches = {str(r.path): ".".join(r.value.get("type") or ()) async for r in
                       client.get_tree(Path(*MATCH_ROOT))}  # fmt: skip
            yprint({"types": sorted(types), "matches": matches})
        elif a.op == "match":
            path = Path(*MATCH_ROOT, *P(a.pattern))
            if a.delete:
                res = await client.delete(path)
                if not res.changed:
                    raise NoDataError(f"no type is bound to {a.pattern}")
            elif a.type:
                await client.set(path, {"type": list(type_name(a.type))})
            else:
                res = await client.get(path)
                if "value" not in res:
                    raise NoDataError(f"no type is bound to {a.pattern}")
                print(".".join(res.value.get("type") or ()))
    return 0


# --- codec ---


def codec_parser() -> ArgParser:
    p = ArgParser(
        prog="distkv client codec",
        description="Codecs: translate values for users whose aux 'codec' names a converter.",
    )
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser(
        "set",
        help="define codec NAME; the encode and decode scripts come from standard input"
        " (on a terminal each ends with Ctrl-D; from a pipe they are separated by '---')",
    )
    s.add_argument(
        "-i", "--in", dest="inputs", nargs=2, action="append", default=[],
        metavar=("SENT", "STORED"), help="decode example: what a client sends, what is stored",
    )  # fmt: skip
    s.add_argument(
        "-o", "--out", dest="outputs", nargs=2, action="append", default=[],
        metavar=("STORED", "READ"), help="encode example: what is stored, what a client reads",
    )  # fmt: skip
    s.add_argument("-e", "--encode", metavar="FILE", help="read the encode script from FILE")
    s.add_argument("-d", "--decode", metavar="FILE", help="read the decode script from FILE")
    s.add_argument("name")
    add_get_list_delete(sub, "codec", "the codecs and converters")
    c = sub.add_parser(
        "convert", help="convert -c CODEC CONVERTER PATTERN: in CONVERTER, use CODEC there"
    )
    c.add_argument("-c", "--codec", help="the codec name")
    c.add_argument("-d", "--delete", action="store_true", help="remove the binding")
    c.add_argument("converter")
    c.add_argument("pattern", nargs="?")
    return p


def run_codec(cfg: dict, args: list[str]) -> int:
    a = codec_parser().parse_args(args)
    return trio.run(_codec, cfg, a)


async def _codec(cfg: dict, a) -> int:
    if a.op == "set":
        name = codec_name(a.name)
        if not a.inputs or not a.outputs:
            raise UsageError("a codec needs examples both ways: -i SENT STORED -o STORED READ")
        prompts = []
        if not a.encode:
            prompts.append("Enter the Python script to encode 'value'.")
        if not a.decode:
            prompts.append("Enter the Python script to decode 'value'.")
        if a.encode == "-" and a.decode == "-":
            raise UsageError("only one of --encode / --decode can read standard input")
        from_stdin = iter(read_scripts(prompts) if prompts else [])
        record = {
            "encode": read_file(a.encode) if a.encode else next(from_stdin),
            "decode": read_file(a.decode) if a.decode else next(from_stdin),
            "in": [[_literal(x), _literal(y)] for x, y in a.inputs],
            "out": [[_literal(x), _literal(y)] for x, y in a.outputs],
        }
    async with open_client(cfg) as client:
        if a.op == "set":
            await client.set(_name_path(CODEC_ROOT, name), record)
        elif a.op == "get":
            await _get_def(client, CODEC_ROOT, codec_name(a.name), "codec")
        elif a.op == "delete":
            await _delete_def(client, CODEC_ROOT, codec_name(a.name), "codec")
        elif a.op == "list":
            codecs = [".".join(map(str, r.path)) async for r in client.get_tree(Path(*CODEC_ROOT))]
            convs: dict[str, dict] = {}
            async for r in client.get_tree(Path(*CONV_ROOT)):
                conv, *pattern = r.path
                convs.setdefault(conv, {})[str(Path(*pattern))] = ".".join(
                    r.value.get("codec") or ()
                )
            yprint({"codecs": sorted(codecs), "converters": convs})
        elif a.op == "convert":
            if not a.pattern:
                await _show_tree(
                    client, Path(*CONV_ROOT, a.converter), f"no converter {a.converter}"
                )
                return 0
            path = Path(*CONV_ROOT, a.converter, *P(a.pattern))
            if a.delete:
                res = await client.delete(path)
                if not res.changed:
                    raise NoDataError(f"converter {a.converter} has nothing at {a.pattern}")
            elif a.codec:
                await client.set(path, {"codec": list(codec_name(a.codec))})
            else:
                raise ClientError("convert needs -c CODEC (or -d to remove)")
    return 0
