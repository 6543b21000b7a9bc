"""Dynamic configuration: sections overridden by entries in the tree.

A program that runs on many hosts (a gateway, a runner) reads its section from the
static configuration file, then from ``.distkv config NAME`` in the tree, which
overrides it key by key (a nested mapping merges). Change the entry and every such
program picks up the new settings: one place to configure a house, replicated to
every node. (Sections a server reads once, ``server`` and ``logging``, and ``connect``,
which is needed before there is a tree, cannot be set this way.)

An entry the user may not read is silently ignored, as the tutorial says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .config import merge
from .core.path import Path
from .exceptions import PermissionDenied

__all__ = ["CONFIG_ROOT", "config_path", "watch_config"]

CONFIG_ROOT = (".distkv", "config")


def config_path(name: str) -> Path:
    return Path(*CONFIG_ROOT, name)


@asynccontextmanager
async def watch_config(
    client: Any, name: str, base: dict
) -> AsyncIterator[trio.MemoryReceiveChannel]:
    """A channel of the effective section ``name``: ``base`` with the tree's override
    merged in; the first item is the current state, then one item per change."""
    send, recv = trio.open_memory_channel(1)

    async def follow() -> None:
        try:
            async with client.watch(config_path(name), fetch=True, max_depth=0) as w:
                current: dict = {}
                live = False
                async for ev in w:
                    if ev.get("state") == "uptodate":
                        live = True
                    else:
                        value = ev.get("value")
                        current = value if isinstance(value, dict) else {}
                        if not live:
                            continue
                    await send.send(merge(base, current))
        except PermissionDenied:
            await send.send(base)
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        try:
            yield recv
        finally:
            nursery.cancel_scope.cancel()
