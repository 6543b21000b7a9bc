"""The server: one node of a DistKV network.

It owns the :class:`~distkv.core.replica.Replica` (the tree and the node's counters),
accepts client connections and routes every change to the watchers (and, as they
are added, to persistence and the replication bus).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import trio

from .. import __version__
from ..auth import LoginGuard, get_method, start_login
from ..busypoll import default_budget_us
from ..config import server_ssl_context
from ..core import tree as trees
from ..core.acl import AclTable, user_path
from ..core.codecs import CodecRegistry
from ..core.path import Path
from ..core.replica import DROPPED, Replica
from ..core.types import NotGiven
from ..core.valuetypes import TypeRegistry
from ..exceptions import (
    AuthFailedError,
    DistKVError,
    PermissionDenied,
    ServerError,
    StorageError,
)
from .commands import COMMANDS
from .limits import Limits
from .metrics import Metrics
from .session import Session
from .watch import WatchRegistry

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Server:
    """A DistKV node: the tree, its clients, and the hooks every change goes through."""

    def __init__(
        self,
        name: str,
        cfg: dict,
        *,
        init: Any = NotGiven,
        bus: Any = None,
        clock: Callable[[], int] | None = None,
        connect: Callable[[str, tuple], Any] | None = None,
        replica: dict | None = None,
        disk_write: Callable[[int, Any], int] | None = None,
        force_init: bool = False,
    ):
        """``bus``: what to replicate over instead of ``server.mqtt`` (a
        :class:`~distkv.bus.memory.MemoryNetwork` in tests). ``clock``: wall-clock
        milliseconds that stamp writes (tests pass trio's, so that virtual time drives
        whole clusters). ``connect``: how a joining node reaches a peer's client port
        (default TCP). ``replica``: timing overrides for the replica, over
        ``server.replication``. ``force_init``: ``init`` even on a network that exists
        (its root value is overwritten).
        ``disk_write``: the ``os.write`` of the state directory (tests pass one that
        fails like a full disk). Everything a node depends on comes in here."""
        self.disk_write = disk_write
        self.name = name
        self.cfg = cfg
        # timing knobs: the config's (checked against the schema), then the caller's
        knobs = {**(cfg["server"].get("replication") or {}), **(replica or {})}
        self.replica = Replica(name, **knobs)
        self.watches = WatchRegistry()
        self.commands = dict(COMMANDS)
        #: request counts and latencies, for the web service's /metrics
        self.metrics = Metrics(self.commands)
        self.sessions: set[Session] = set()
        self.per_addr: dict[str, int] = {}  # open connections by client address
        self.init = init
        self.force_init = force_init
        self.auth_required = False
        self.auth_method: str | None = None
        self.acls = AclTable()
        self.limits = Limits.from_config(cfg["server"].get("limits"))
        self.types = TypeRegistry(budget=self.limits.script_ms / 1000)
        self.codecs = CodecRegistry(budget=self.limits.script_ms / 1000)
        self.login_guard = LoginGuard()
        self.storage = None  # StateDir, when server.state_dir is set
        self.logfile = None  # LogFile of `client log dest`
        self._log_lock = trio.Lock()  # one `log dest`/`log stop` at a time
        # Replication (distkv.server.replication.Replicator) when a bus is configured;
        # without one the replica's outgoing messages are simply dropped.
        self.replicator = None
        self._bus = bus
        self._connect_peer = connect
        self.ports: list[tuple[str, int]] = []
        self._local_nursery: trio.Nursery | None = None
        self.started = trio.Event()
        # Wall-clock milliseconds that stamp writes (the hybrid logical clock).
        self.clock_ms: Callable[[], int] = clock or now_ms
        bp = cfg["server"].get("busy_poll")
        self.busy_poll_us: float = default_budget_us() if bp is None else float(bp)

    # --- changes ---

    def write(self, path: Path, value: Any):
        """Make a local change and tell everybody who needs to know. Refused (the tree
        untouched) while the state directory does not take writes (a full disk)."""
        st = self.storage
        if st is not None and st.error is not None:
            raise StorageError(f"this node cannot store changes now ({st.error}); reads work")
        e = self.replica.local_write(path, value, self.clock_ms())
        self.changed(path, e)
        return e

    def changed(self, path: tuple, e, conflict: bool = False) -> None:
        """Every change, local or replicated, passes here exactly once."""
        if path and path[0] is None:
            self._system_changed(path, e)
        self.watches.notify(path, e, conflict)
        if self.storage is not None:
            self.storage.append_entry(path, e)
        if self.logfile is not None:
            self.logfile.append_entry(path, e)

    def replicated(self, changes: list) -> None:
        """Changes the replica made from the bus, a sync or a repair: this is how they
        reach the watchers, persistence and log files (as local ones do through
        :meth:`changed`). ``changes``: ``(path, entry, merge code)``."""
        for path, e, code in changes:
            if code == trees.MERGE_SAME:
                continue
            if code == DROPPED:
                self.purged(path, e, notify=True)
            elif code == trees.MERGE_KEPT:
                # our value stays, only the chain grew: persist it, nothing to show
                if self.storage is not None:
                    self.storage.append_entry(path, e)
                if self.logfile is not None:
                    self.logfile.append_entry(path, e)
            else:
                self.changed(path, e, code >= trees.MERGE_CONFLICT_TAKEN)

    def purged(self, path: tuple, e, *, notify: bool) -> None:
        """A tombstone (or a dropped entry) left the tree; ``notify``: watchers and the
        system indexes hear of it too."""
        if notify:
            if path and path[0] is None:
                self._system_changed(path, e)
            self.watches.notify(path, e)
        if self.storage is not None:
            self.storage.append_purge(path)
        if self.logfile is not None:
            self.logfile.append_purge(path)

    def _system_changed(self, path: tuple, e) -> None:
        if len(path) < 2:
            return
        kind = path[1]
        if kind in ("type", "match"):
            self.types.apply(path, e.value)
            return
        if kind in ("codec", "conv"):
            self.codecs.apply(path, e.value)
            return
        self.acls.apply(path, e.value)
        if len(path) == 2 and path[1] == "auth":
            v = e.value
            cur = v.get("current") if isinstance(v, dict) else None
            self.auth_method = cur
            try:
                self.auth_required = cur is not None and get_method(cur).needs_login
            except DistKVError:
                # an unknown method name: fail closed (nobody can log in with it)
                logger.error("auth method %r is unknown: every login will be refused", cur)
                self.auth_required = True
        if kind in ("auth", "acl") and self.sessions:
            self._recheck_logins()

    def _recheck_logins(self) -> None:
        """After any change to users, groups, ACLs or the auth method: every live
        connection gets the rights its login has *now*. A login that no longer holds
        (its user was deleted, auth was switched on or to another method since) is
        ended: the connection stays, but with no rights and no streams, as if it had
        never logged in."""
        for s in list(self.sessions):
            if not self.auth_required:
                s.acl = None  # auth off: everybody is root
                continue
            if s.user is None:
                if s.tasks:  # streams started while auth was off
                    s.logout("auth is on now; log in")
                continue
            if s.auth_method != self.auth_method:
                s.logout(f"the auth method is {self.auth_method} now; log in again")
                continue
            e = self.replica.tree.lookup(user_path(s.auth_method, s.user))
            if e is None or e.value is NotGiven:
                s.logout(f"user {s.user} was deleted")
                continue
            grants = self.acls.grants(s.auth_method, s.user)
            s.acl = None if grants.is_unrestricted else grants
            s.conv = self._converter(e.value)

    def after_batch(self) -> bool:
        """Called once per batch of requests, before replies are sent: whatever the
        batch changed is handed to the OS now, so an acknowledged write survives a
        crash of this process. False: the state directory did not take it (a full
        disk; it is kept and retried), so the batch's replies must not be sent as
        acknowledgements."""
        ok = True
        st = self.storage
        if st is not None:
            was_ok = st.error is None
            try:
                st.flush()
            except StorageError:
                # logged by the state directory, which now refuses writes; a batch
                # after that holds no local writes (Server.write refused them), so
                # only the one that found the disk full has replies to withhold
                ok = not was_ok
        if self.logfile is not None:
            self.logfile.flush()
        if self.replicator is not None:
            self.replicator.flush()
        elif self.replica.outbox:
            self.replica.outbox.clear()
        return ok

    @property
    def serving(self) -> bool:
        """Whether data requests are answered now (a replicating node: synced)."""
        rep = self.replicator
        return rep is None or rep.serving

    async def wait_ready(self) -> None:
        """Wait until :attr:`serving`; ``NotReadyError`` after ``server.ready_timeout``."""
        if self.replicator is not None:
            await self.replicator.wait_ready()

    @property
    def fsync_always(self) -> bool:
        return self.storage is not None and self.storage.fsync == "always"

    # --- login ---

    async def verify_login(self, host: str, msg: Any) -> tuple[str, str, Any]:
        """Check a login from ``host`` (the client's address) within the login limits:
        ``(method name, user, user record)``, or :class:`AuthFailedError` (and
        others of its family for a malformed login). Client sessions and the web
        service's ``/metrics`` both log in through here.

        Counted before it is checked (tries in flight count), per address and user
        name: nobody can lock a user out from another address (see LoginGuard)."""
        asked = msg.get("name") if isinstance(msg, dict) else None
        guard = self.login_guard
        guard.attempt(trio.current_time(), host, asked)
        ok = False
        try:
            method, name = start_login(self.auth_method, msg)
            e = self.replica.tree.lookup(user_path(method.name, name))
            record = e.value if e is not None and e.value is not NotGiven else None
            if getattr(method, "slow", False):
                user = await trio.to_thread.run_sync(method.verify, msg, record)
            else:
                user = method.verify(msg, record)
            ok = True
        except AuthFailedError:
            logger.warning("login failed for %r from %s", asked, host)
            raise
        finally:  # anything but a verified login counts as a failure
            guard.finished(trio.current_time(), host, asked, ok)
        return method.name, user, record

    async def login(self, session: Session, msg: dict) -> dict:
        """Check a login; on success the session acts as that user from now on."""
        method, user, record = await self.verify_login(session.peer.rsplit(":", 1)[0], msg)
        session.proto.unlock()
        session.user = user
        session.auth_method = method
        session.conv = self._converter(record)
        if self.auth_required:
            grants = self.acls.grants(method, user)
            session.acl = None if grants.is_unrestricted else grants
        logger.info("%s logged in as %s (%s)", session.peer, user, method)
        return {"user": user, "method": method}

    # --- files ---

    def _checked_file(self, session: Session, fn: Any) -> str:
        import os

        if not isinstance(fn, str) or not fn:
            raise StorageError("need a file name")
        if session.acl is not None:
            raise PermissionDenied(f"{session.user} may not make the server write files")
        dirs = self.cfg["server"].get("log_dirs") or []
        if self.storage is not None:
            dirs = [*dirs, self.storage.path]
        real = os.path.realpath(fn)
        for d in dirs:
            d = os.path.realpath(d)
            if real.startswith(d.rstrip("/") + "/"):
                return real
        raise PermissionDenied(
            f"the server may write files only below {', '.join(dirs) or '(no directory)'}"
            f" (server.log_dirs); not {fn}"
        )

    async def log_dest(self, session: Session, fn: Any, incremental: bool) -> str:
        """``client log dest``: from now on every change also goes to ``fn``, after the
        state as of now (unless ``incremental``). The switch from the previous file
        happens at one moment (no change is in both or in neither); opening, writing
        the state and closing run in worker threads."""
        from ..storage.records import iter_entries
        from ..storage.statefiles import create_log_file

        fn = self._checked_file(session, fn)
        async with self._log_lock:
            try:
                lf = await create_log_file(fn)
            except BaseException:
                await self._close_log()
                raise
            old, self.logfile = self.logfile, lf
            if old is not None:
                old.flush()
            r = self.replica
            try:
                await lf.start(
                    incremental,
                    None if incremental else iter_entries(r.tree),
                    node=self.name,
                    tick=r.tick,
                    tock=r.tock,
                )
            except BaseException:
                await self._close_log()
                raise
            finally:
                if old is not None:
                    with trio.CancelScope(shield=True):
                        await old.aclose()
        return fn

    async def _close_log(self) -> None:
        lf, self.logfile = self.logfile, None
        if lf is not None:
            with trio.CancelScope(shield=True):
                await lf.aclose()

    async def log_stop(self) -> bool:
        async with self._log_lock:
            if self.logfile is None:
                return False
            await self._close_log()
            return True

    async def save(self, session: Session, fn: Any) -> str:
        """``client log save``: a dump of the state as of now, written in a worker thread."""
        from ..storage.records import iter_entries
        from ..storage.statefiles import save_dump

        fn = self._checked_file(session, fn)
        r = self.replica
        await save_dump(fn, iter_entries(r.tree), node=self.name, tick=r.tick, tock=r.tock)
        return fn

    # --- access control (filled in by the auth layer) ---

    def check_acl(self, session: Session, path: Path, right: str) -> None:
        """Raise PermissionDenied (naming user, path and right) unless allowed."""
        if session.acl is not None:
            session.acl.check(path, right)

    def _converter(self, record: Any):
        """The codec converter a user record's ``aux: {codec: NAME}`` asks for."""
        aux = record.get("aux") if isinstance(record, dict) else None
        name = aux.get("codec") if isinstance(aux, dict) else None
        return self.codecs.converter(name)

    def check_value(self, path: Path, value: Any) -> None:
        """Refuse a client's write that its path's type rejects, or a type, match,
        codec or converter definition that would not work (ValueTypeError,
        ScriptError, ClientError). Replicated writes were checked at their origin."""
        if path and path[0] is None:
            self.types.validate(path, value)
            self.codecs.validate(path, value)
        elif self.types.matches:
            self.types.check(path, value)

    def load_file(self, path: str) -> None:
        """Load a state file written by ``client log dest`` or ``log save``."""
        from ..storage.statefiles import load_file

        rep = load_file(path, self.replica, strict=True)
        logger.info("loaded %d records from %s", rep.records, path)
        self._rebuild_indexes()

    def _rebuild_indexes(self) -> None:
        """After loading a tree wholesale: rebuild the replication bookkeeping (which
        ticks are present) and re-read auth and ACL settings from it."""
        self.replica.rebuild_bookkeeping()
        for rel, e in self.replica.tree.walk((None,), sort=False):
            if e.value is not NotGiven:
                self._system_changed((None, *rel), e)

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
            # the largest request this node takes (after login): a client refuses a
            # bigger one itself instead of being disconnected for it
            "max_message": int(self.cfg["server"]["max_message"]),
        }

    def state(self) -> dict:
        return {
            "node": self.name,
            "tick": self.replica.tick,
            "tock": self.replica.tock,
            "entries": self.replica.tree.count() - 1,
            "clients": len(self.sessions),
            "conflicts": self.replica.conflicts,
            "replication": self.replicator.state() if self.replicator is not None else None,
        }

    # --- running ---

    async def handle_client(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection until it ends (TCP, TLS or an in-memory
        stream, as tests and in-process clients use)."""
        await self._handle_client(stream)

    async def _handle_client(self, stream: trio.SocketStream) -> None:
        try:
            sock = getattr(stream, "transport_stream", stream).socket
            host, port = sock.getpeername()[:2]
            peer = f"{host}:{port}"
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError, ValueError):  # a local socket pair: no address
            peer = "local"
        addr = peer.rsplit(":", 1)[0]
        why = self._refuse_client(addr)
        if why is not None:
            logger.warning("refused a connection from %s: %s", peer, why)
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            return
        session = Session(self, stream, peer)
        self.sessions.add(session)
        self.per_addr[addr] = self.per_addr.get(addr, 0) + 1
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            n = self.per_addr.pop(addr) - 1
            if n:
                self.per_addr[addr] = n

    def _refuse_client(self, addr: str) -> str | None:
        """Why a new connection from ``addr`` is refused (None: it is not)."""
        lim = self.limits
        if len(self.sessions) >= lim.clients:
            return f"{len(self.sessions)} connections, server.limits.clients is {lim.clients}"
        n = self.per_addr.get(addr, 0)
        if n >= lim.clients_per_addr:
            return f"{n} connections from it, server.limits.clients_per_addr is {lim.clients_per_addr}"
        return None

    def open_local_stream(self) -> trio.abc.Stream:
        """A client connection inside this process (no TCP): for services the node
        runs itself (``server.services``: runners, gateways). Returns the client end."""
        if self._local_nursery is None:
            raise ServerError("the node is not serving yet")
        # a socket pair, not trio.testing's memory streams: importing trio.testing
        # alone costs ~10 MB of RSS, a third of a node
        a, b = socket.socketpair()
        self._local_nursery.start_soon(
            self.handle_client, trio.SocketStream(trio.socket.from_stdlib_socket(b))
        )
        return trio.SocketStream(trio.socket.from_stdlib_socket(a))

    def close_clients(self) -> int:
        """Drop every client connection (their clients reconnect); how many."""
        sessions = list(self.sessions)
        for session in sessions:
            session.abort()
        return len(sessions)

    async def _serve_clients(self, listeners) -> None:
        try:
            await trio.serve_listeners(self._handle_client, listeners)
        finally:
            with trio.CancelScope(shield=True):
                await self._close_log()
                if self.storage is not None:
                    await self.storage.aclose()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``task_status.started`` gets the bound ports."""
        scfg = self.cfg["server"]
        async with trio.open_nursery() as nursery:
            if scfg.get("state_dir"):
                from ..storage.statedir import StateDir

                sd = StateDir(
                    scfg["state_dir"],
                    fsync=scfg.get("fsync", "interval"),
                    interval=float(scfg.get("fsync_interval", 1.0)),
                    **({"write": self.disk_write} if self.disk_write is not None else {}),
                )
                sd.load(self.replica)
                self._rebuild_indexes()
                await nursery.start(sd.serve, self.replica)
                self.storage = sd
            if (
                self.init is not NotGiven
                and self.replica.tree.root.value is NotGiven
                and self.bus_config() is None
            ):
                # a lone node; with a bus the replicator first checks that the network
                # does not exist yet (see replication.joiner.Joiner.create_network)
                self.write(Path(), self.init)
                self.after_batch()
            bind = scfg["bind_default"]
            try:
                listeners = await trio.open_tcp_listeners(int(bind["port"]), host=bind.get("host"))
            except OSError as exc:
                raise ServerError(
                    f"cannot listen on {bind.get('host')}:{bind['port']}: {exc.strerror or exc}"
                    " (server.bind_default)"
                ) from None
            self.ports = [lst.socket.getsockname()[:2] for lst in listeners]
            ctx = server_ssl_context(bind.get("ssl"), "server.bind_default.ssl")
            if ctx is not None:
                listeners = [trio.SSLListener(lst, ctx) for lst in listeners]
            # before serving clients: a joining node must gate requests until it is ready
            try:
                await nursery.start(self._replicate)
            except BaseException:
                # the replicator refused to start (e.g. -i on an existing network):
                # nobody will serve these listeners
                with trio.CancelScope(shield=True):
                    for lst in listeners:
                        await lst.aclose()
                raise
            self._local_nursery = nursery
            nursery.start_soon(self._serve_clients, listeners)
            if (scfg.get("web") or {}).get("enabled"):
                from .web import serve_web

                await nursery.start(serve_web, self)
            logger.info("node %s serving on %s", self.name, self.ports)
            self.started.set()
            task_status.started(self.ports)

    def bus_config(self) -> Any:
        """The bus to replicate over: ``bus=`` if given, else ``server.mqtt`` (a uri or
        a mapping with ``uri``) unless its uri is null; None means no bus."""
        if self._bus is not None:
            return self._bus
        mq = self.cfg["server"].get("mqtt")
        if isinstance(mq, str):
            return mq or None
        if isinstance(mq, dict) and mq.get("uri"):
            return mq
        return None

    async def _replicate(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the :class:`~distkv.server.replication.Replicator` (also without a bus:
        it still ticks the replica, which purges tombstones)."""
        from .replication import Replicator

        self.replicator = Replicator(
            self,
            self.bus_config(),
            clock=self.clock_ms,
            connect=self._connect_peer,
        )
        await self.replicator.serve(task_status=task_status)


async def serve(
    name: str, cfg: dict, *, init: Any = NotGiven, task_status=trio.TASK_STATUS_IGNORED
):
    """Convenience: build a :class:`Server` and run it."""
    server = Server(name, cfg, init=init)
    await server.serve(task_status=task_status)
