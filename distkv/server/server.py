"""The server: one node of a DistKV network.

It owns the :class:`~distkv.core.replica.Replica` (the tree and the node's counters),
accepts client connections and routes every change to the watchers (and, as they
are added, to persistence and the replication bus).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import trio

from .. import __version__
from ..core.path import Path
from ..core.replica import Replica
from ..core.types import NotGiven
from ..exceptions import PermissionDenied
from .commands import COMMANDS
from .session import Session
from .watch import WatchRegistry

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Server:
    """A DistKV node: the tree, its clients, and the hooks every change goes through."""

    def __init__(self, name: str, cfg: dict, *, init: Any = NotGiven):
        self.name = name
        self.cfg = cfg
        self.replica = Replica(name)
        self.watches = WatchRegistry()
        self.commands = dict(COMMANDS)
        self.sessions: set[Session] = set()
        self.init = init
        self.auth_required = False
        self.auth_method: str | None = None
        self.ports: list[tuple[str, int]] = []
        self.started = trio.Event()

    # --- changes ---

    def write(self, path: Path, value: Any):
        """Make a local change and tell everybody who needs to know."""
        e = self.replica.local_write(path, value, now_ms())
        self.watches.notify(path, e)
        return e

    def after_batch(self) -> None:
        """Called once per batch of requests, before replies are sent."""

    # --- access control (filled in by the auth layer) ---

    def check_acl(self, session: Session, path: Path, right: str) -> None:
        if session.acl is None:
            return
        if not session.acl.allowed(path, right):
            raise PermissionDenied(f"{session.user} may not {right} {path}")

    def acl_allows(self, session: Session, path: Path, right: str) -> bool:
        return session.acl is None or session.acl.allowed(path, right)

    def check_type(self, session: Session, path: Path, value: Any) -> None:
        """Type checks on values (see the types issue); nothing to check yet."""

    def load_file(self, path: str) -> None:
        """Load a state file written by ``client log dest`` (see the storage layer)."""
        from ..exceptions import StorageError

        raise StorageError("loading state files is not available yet")

    # --- info ---

    def greeting(self, session: Session) -> dict:
        return {
            "seq": 0,
            "version": PROTOCOL_VERSION,
            "server": __version__,
            "node": self.name,
            "tick": self.replica.tick,
            "tock": self.replica.tock,
            "auth": self.auth_method if self.auth_required else None,
            "window": session.window,
        }

    def state(self) -> dict:
        return {
            "node": self.name,
            "tick": self.replica.tick,
            "tock": self.replica.tock,
            "entries": self.replica.tree.count() - 1,
            "clients": len(self.sessions),
            "conflicts": self.replica.conflicts,
        }

    # --- running ---

    async def _handle_client(self, stream: trio.SocketStream) -> None:
        try:
            peer = "%s:%s" % stream.socket.getpeername()[:2]
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            peer = "?"
        session = Session(self, stream, peer)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``task_status.started`` gets the bound ports."""
        if self.init is not NotGiven and self.replica.tree.root.value is NotGiven:
            self.write(Path(), self.init)
        bind = self.cfg["server"]["bind_default"]
        listeners = await trio.open_tcp_listeners(int(bind["port"]), host=bind.get("host"))
        self.ports = [lst.socket.getsockname()[:2] for lst in listeners]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle_client, listeners)
            logger.info("node %s serving on %s", self.name, self.ports)
            self.started.set()
            task_status.started(self.ports)


async def serve(name: str, cfg: dict, *, init: Any = NotGiven, task_status=trio.TASK_STATUS_IGNORED):
    """Convenience: build a :class:`Server` and run it."""
    server = Server(name, cfg, init=init)
    await server.serve(task_status=task_status)
