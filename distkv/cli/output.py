"""YAML output for the CLI: everything a command prints goes through here."""

from __future__ import annotations

import sys
from typing import Any

import yaml

from ..core.path import Path
from ..core.types import NotGiven
from ..result import attrdict


class Dumper(yaml.SafeDumper):
    """SafeDumper that knows paths (``!P a.b``) and tuples (as lists)."""


def _repr_path(dumper: yaml.SafeDumper, data: Path):
    return dumper.represent_scalar("!P", str(data))


def _repr_tuple(dumper: yaml.SafeDumper, data: tuple):
    return dumper.represent_list(list(data))


class Flow(list):
    """A list printed on one line (``[node, tick]`` chain links)."""


def _repr_flow(dumper: yaml.SafeDumper, data: Flow):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


def chain_out(chain) -> list:
    return [Flow(link) for link in chain or ()]


_SCALAR = (str, int, float, bool, bytes, type(None))


def flow_lists(data: Any) -> Any:
    """Print short lists of scalars (tick ranges, addresses) on one line: ``[1, 3]``."""
    if isinstance(data, dict):
        return {k: flow_lists(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        if all(isinstance(x, _SCALAR) for x in data) and len(data) <= 8:
            return Flow(data)
        return [flow_lists(x) for x in data]
    return data


def _repr_str(dumper: yaml.SafeDumper, data: str):
    """Multi-line strings (stored code, mostly) as readable literal blocks."""
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_str(data)


def _repr_notgiven(dumper: yaml.SafeDumper, data: Any):
    return dumper.represent_scalar("!NotGiven", "")


Dumper.add_representer(str, _repr_str)
Dumper.add_representer(Path, _repr_path)
Dumper.add_representer(tuple, _repr_tuple)
Dumper.add_representer(attrdict, Dumper.represent_dict)
Dumper.add_representer(type(NotGiven), _repr_notgiven)
Dumper.add_representer(Flow, _repr_flow)


def yformat(data: Any) -> str:
    """Format ``data`` as YAML; a lone string is double-quoted, as in the tutorial."""
    if isinstance(data, str):
        out = yaml.dump(data, Dumper=Dumper, default_style='"', allow_unicode=True, width=10**9)
    else:
        out = yaml.dump(
            data, Dumper=Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True
        )
    if out.endswith("\n...\n"):
        out = out[:-4]
    return out


def yprint(data: Any, file=None) -> None:
    file = file or sys.stdout
    file.write(yformat(data))
    file.flush()


def nest(items, key: str) -> dict:
    """Turn ``(relative_path, value)`` pairs into the nested ``-d`` form.

    Each entry's value is stored under ``key`` (``_`` in the tutorial) beside its
    children.
    """
    root: dict = {}
    for rel, value in items:
        d = root
        for k in rel:
            nxt = d.get(k)
            if not isinstance(nxt, dict):
                nxt = d[k] = {}
            d = nxt
        d[key] = value
    return root
