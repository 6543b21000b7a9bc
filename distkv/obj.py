"""Active objects: a live local copy of a subtree.

``async with client.mirror("one", root_type=OneRoot) as root:`` fetches the subtree,
then keeps it current from a watch. Subclass :class:`ClientEntry` and override
:meth:`ClientEntry.set_value` to react to changes; choose classes per child with
``child_type``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .core.path import Path
from .core.types import NotGiven
from .groups import unwrap_group

if TYPE_CHECKING:
    from .client import Client

__all__ = ["ClientEntry", "ClientRoot", "mirror"]


class ClientEntry:
    """One mirrored entry. ``value`` is :data:`NotGiven` when there is none."""

    def __init__(self, parent: ClientEntry | None, name: Any):
        self._parent = parent
        self._name = name
        self._children: dict[Any, ClientEntry] = {}
        self.value: Any = NotGiven
        self.chain: list | None = None
        self.tock: int = 0

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        """The class for a child called ``name``; override to build typed trees.

        By default children are of their parent's class, so a root whose
        ``child_type`` returns ``MyEntry`` gets ``MyEntry`` all the way down."""
        return cls

    @property
    def root(self) -> ClientRoot:
        e = self
        while e._parent is not None:
            e = e._parent
        return e  # type: ignore[return-value]

    @property
    def subpath(self) -> Path:
        """This entry's path relative to the mirrored root."""
        names = []
        e = self
        while e._parent is not None:
            names.append(e._name)
            e = e._parent
        return Path.build(reversed(names))

    @property
    def path(self) -> Path:
        return self.root._path + self.subpath

    def __getitem__(self, name: Any) -> ClientEntry:
        return self._children[name]

    def __contains__(self, name: Any) -> bool:
        return name in self._children

    def __iter__(self):
        return iter(self._children.values())

    def keys(self):
        return self._children.keys()

    def get(self, name: Any, default: Any = None) -> ClientEntry | None:
        return self._children.get(name, default)

    def follow(self, path: tuple, create: bool = True) -> ClientEntry | None:
        e = self
        for name in path:
            c = e._children.get(name)
            if c is None:
                if not create:
                    return None
                c = e.child_type(name)(e, name)
                e._children[name] = c
            e = c
        return e

    async def set_value(self, value: Any) -> None:
        """Called with every new value (``NotGiven`` when deleted); override to react."""
        self.value = value

    async def update(self, value: Any) -> Any:
        """Write a new value to the server, checked against the chain we last saw."""
        client = self.root._client
        res = await client.set(self.path, value, chain=self.chain if self.chain else None)
        return res

    async def delete(self) -> Any:
        return await self.root._client.delete(self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.subpath} ={self.value!r}>"


class ClientRoot(ClientEntry):
    """The top of a mirrored subtree."""

    def __init__(self, client: Client, path: Path):
        super().__init__(None, None)
        self._client = client
        self._path = path
        self.synced = trio.Event()

    @property
    def client(self) -> Client:
        """The client this mirror reads through (hooks may write with it)."""
        return self._client

    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return ClientEntry

    async def _apply(self, msg) -> None:
        e = self.follow(msg.path)
        e.tock = msg.get("tock", 0)
        e.chain = msg.get("chain")
        value = msg.get("value", NotGiven)
        # the base implementation stores the value; subclasses hook in here
        await e.set_value(value)
        e.value = value


@asynccontextmanager
async def mirror(
    client: Client, path: Path, *, root_type: type[ClientRoot] | None = None
) -> AsyncIterator[ClientRoot]:
    """Mirror ``path``; yields once the current state is loaded."""
    root = (root_type or ClientRoot)(client, path)
    with unwrap_group():
        async with trio.open_nursery() as nursery:

            async def run(task_status=trio.TASK_STATUS_IGNORED):
                async with client.watch(path, fetch=True, nchain=1) as w:
                    started = False
                    async for msg in w:
                        if "path" not in msg:
                            if not started:
                                started = True
                                root.synced.set()
                                task_status.started()
                            continue
                        await root._apply(msg)

            await nursery.start(run)
            try:
                yield root
            finally:
                nursery.cancel_scope.cancel()
