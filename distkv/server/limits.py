"""What one client may cost a node: the ``server.limits`` settings, read once.

Why limits at all: the node holds the whole tree in memory and serves every client
from one thread, so a single request must not be able to make it allocate without
bound, recurse past Python's stack, or walk for seconds. Each limit is a config key
(``server.limits.NAME``, defaults in :mod:`distkv.config`); a request past one gets
a one-line error naming that key, a refused connection a one-line log.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..exceptions import ClientError, ConfigError


@dataclass(frozen=True, slots=True)
class Limits:
    path_depth: int = 128
    path_bytes: int = 8192
    value_depth: int = 64
    array_len: int = 4096
    login_message: int = 16384
    watches: int = 1000
    clients: int = 1000
    clients_per_addr: int = 64
    script_ms: int = 200  # one call of a stored type check or codec

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        """``server.limits`` (missing keys keep their defaults); ConfigError on junk."""
        if cfg is None:
            return cls()
        if not isinstance(cfg, dict):
            raise ConfigError("server.limits must be a mapping")
        names = {f.name for f in fields(cls)}
        vals = {}
        for k, v in cfg.items():
            if k not in names:
                raise ConfigError(f"server.limits.{k} is not a known limit")
            if type(v) is not int or v <= 0:
                raise ConfigError(f"server.limits.{k} must be a positive integer, not {v!r}")
            vals[k] = v
        return cls(**vals)

    def check_path(self, path: tuple) -> None:
        if len(path) > self.path_depth:
            raise ClientError(
                f"path has {len(path)} elements, more than server.limits.path_depth "
                f"({self.path_depth})"
            )

    def check_value(self, value: Any) -> None:
        """ClientError if lists/maps in ``value`` nest deeper than ``value_depth``.
        Scalars (the usual value) cost one type check."""
        t = type(value)
        if t is not list and t is not dict and t is not tuple:
            return
        if nesting(value, self.value_depth) > self.value_depth:
            raise ClientError(
                f"value nests lists/maps more than server.limits.value_depth "
                f"({self.value_depth}) deep"
            )


def nesting(value: Any, stop: int) -> int:
    """How deep lists, tuples and maps nest in ``value`` (a scalar: 0), counted
    without recursion; stops looking once past ``stop``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        t = type(v)
        if t is dict:
            items = v.values()
        elif t is list or t is tuple:
            items = v
        else:
            continue
        if d > deepest:
            deepest = d
            if d > stop:
                return d
        for x in items:
            tx = type(x)
            if tx is dict or tx is list or tx is tuple:
                stack.append((x, d + 1))
    return deepest
