"""One client connection, on trio: a thin shell around :class:`ServerProtocol`.

The protocol object (``distkv/wire/protocol.py``) owns framing, sequence numbers,
stream state and credit; this shell reads bytes, runs the requests it reports, and
writes what it queues.

The hot path is deliberately synchronous: every request a read delivers is handled
without a task switch (``get``/``set`` never await), their replies are queued, the
change log is flushed to the OS once for the whole batch, and all replies go out in
one write. Only streams (``get_tree``, ``watch``) and waiting commands (``auth``) run
as tasks.

Order: requests are handled in the order they arrive. A request that has to wait (a
login, or any data request while the node is not ready) holds every later one behind
it in :attr:`Session.held`, so a pipelined ``set`` then ``get`` can never swap places
and pipelined login attempts are checked one at a time. ``ping``, ``auth``,
``get_state``, ``stop`` and ``log_stop`` do not wait for readiness themselves, and
``ping`` and ``get_state`` are answered at once even while earlier requests are held.

Flow control: streams are paced by the client's credit (see the protocol module); on
top of that everything queued for a client counts against ``server.window`` bytes.
Replies to requests never overflow: past the window, the next request waits until
the replies are sent (:meth:`Session._drain`), so a client that pipelines requests and
reads nothing stops being served. Live watch events do overflow: past the window, the client's watches end
with ``StreamOverflowError`` so a slow watcher cannot grow the server's memory.
"""

from __future__ import annotations

import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

import trio

from ..exceptions import (
    ClientAuthRequiredError,
    ClientError,
    DistKVError,
    NotReadyError,
    StorageError,
    StreamOverflowError,
    UnknownActionError,
)
from ..groups import unwrap_group
from ..wire.protocol import (
    ConnectionBroken,
    CreditGranted,
    Request,
    ServerProtocol,
)
from ..wire.transport import Transport
from .metrics import SAMPLE

if TYPE_CHECKING:
    from .server import Server
    from .watch import Watcher

logger = logging.getLogger(__name__)

#: Actions allowed before login.
OPEN_ACTIONS = frozenset({"auth", "ping"})
#: Actions answered also while the node is not ready.
UNGATED = frozenset({"ping", "auth", "get_state", "stop", "log_stop", "sync_dump"})
#: Status reads that are answered at once even while earlier requests are held.
OVERTAKING = frozenset({"ping", "get_state"})


class Session:
    """Server side of one client connection."""

    def __init__(self, server: Server, stream: trio.abc.Stream, peer: str = "?"):
        self.server = server
        self.transport = Transport(stream, server.busy_poll_us)
        self.peer = peer
        scfg = server.cfg["server"]
        self.window = int(scfg["window"])
        lim = server.limits
        self.proto = ServerProtocol(
            max_message=int(scfg["max_message"]),
            event_limit=self.window,
            max_array=lim.array_len,
            max_path=lim.path_bytes,
            login_message=lim.login_message if server.auth_required else None,
        )
        self.sending = False
        self.wakeup = trio.Event()
        self.drained = trio.Event()
        self.tasks: dict[int, trio.CancelScope] = {}
        self.watchers: dict[int, Watcher] = {}
        self.credit_wait: dict[int, trio.Event] = {}
        #: requests waiting behind one that had to wait (see the module docstring)
        self.held: deque[Request] | None = None
        self.user: str | None = None
        self.auth_method: str | None = None
        self.acl = None
        self.conv = None  # the user's codec converter (distkv.core.codecs), if any
        self.closed = False
        self.nursery: trio.Nursery | None = None
        self.n_requests = 0  # for /metrics (distkv/server/metrics.py)

    # --- output

    def send(self, msg: dict) -> None:
        """Queue a message; the batch is written once the current read is handled."""
        self.proto.send(msg)

    def send_stream(self, w: Watcher, msg: dict) -> None:
        """Queue a live watch event (credit and window permitting)."""
        if not w.active or self.closed:
            return
        if self.proto.out_bytes > self.window:
            self.overflow()
            return
        if self.proto.stream_event(w.seq, msg) is not None:
            self._drop_stream(w.seq)
        if not self.sending:
            self.wakeup.set()

    async def stream_send(self, seq: int, msg: dict) -> None:
        """Send one item of a bulk stream: waits for the client's credit and for the
        connection's queue to drain below half the window."""
        proto = self.proto
        while not proto.can_send(seq):
            evt = self.credit_wait[seq] = trio.Event()
            self.wakeup.set()
            await evt.wait()
        proto.stream_item(seq, msg)
        if proto.out_bytes > self.window // 2:
            await self.wait_writable()

    def stream_backlog(self, seq: int, msg: dict) -> None:
        """Queue a bulk item that must not wait (a watch's initial dump)."""
        self.proto.stream_backlog(seq, msg)

    def overflow(self) -> None:
        """The client stopped reading: end its watches. What is queued stays: it may
        hold replies (their requests wait in :meth:`_drain` while the window is full),
        and a reply must never be lost; with the watches gone nothing more is added."""
        logger.warning(
            "client %s fell %d bytes behind: ending its watches", self.peer, self.proto.out_bytes
        )
        for seq in list(self.watchers):
            self._drop_stream(seq)
            self.proto.error(
                seq,
                StreamOverflowError(
                    f"watch fell more than {self.window} bytes behind; re-fetch to resync"
                ),
                end_stream=True,
            )
        self.wakeup.set()

    def _drop_stream(self, seq: int) -> trio.CancelScope | None:
        w = self.watchers.pop(seq, None)
        if w is not None:
            self.server.watches.remove(w)
        scope = self.tasks.pop(seq, None)
        if scope is not None:
            scope.cancel()
        return scope

    async def flush(self) -> None:
        if self.sending:
            return
        self.sending = True
        proto = self.proto
        try:
            while True:
                data = proto.data_to_send()
                if not data:
                    break
                sent = self.transport.send_now(data)  # the usual case: it all fits
                if sent == len(data):
                    await trio.lowlevel.checkpoint()
                else:
                    await self.transport.send_all(data[sent:] if sent else data)
            self.drained.set()
            self.drained = trio.Event()
        finally:
            self.sending = False

    async def wait_writable(self) -> None:
        """Backpressure for bulk streams: wait while the queue is over half the window."""
        while self.proto.out_bytes > self.window // 2:
            self.wakeup.set()
            await self.drained.wait()

    async def _writer(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            await self.flush()

    def abort(self) -> None:
        """Drop this connection (the server closes it; nothing more is sent)."""
        self.closed = True
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    # --- input

    async def run(self) -> None:
        srv = self.server
        try:
            with unwrap_group():
                await self._run(srv)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except BaseExceptionGroup as eg:
            # a client that goes away can break both the reader and the writer
            _rest = eg.split((trio.BrokenResourceError, trio.ClosedResourceError))[1]
            if _rest is not None:
                raise _rest from None
        finally:
            self.closed = True
            for w in self.watchers.values():
                srv.watches.remove(w)
            self.watchers.clear()
            await self.transport.aclose()

    async def _run(self, srv: Server) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._writer)
            self.send(srv.greeting(self))
            await self.flush()
            # the poller's or the stream's own method: one frame less per resume
            t = self.transport
            receive = t.poller.receive_some if t.poller is not None else t.stream.receive_some
            proto = self.proto
            handle = self.handle
            window = self.window
            while True:
                data = await receive(65536)
                if not data:
                    break
                broken = False
                for ev in proto.receive_data(data):
                    t = type(ev)
                    if t is Request:
                        handle(ev)
                        if proto.out_bytes > window:
                            await self._drain()
                    elif t is CreditGranted:
                        evt = self.credit_wait.pop(ev.seq, None)
                        if evt is not None:
                            evt.set()
                    elif t is ConnectionBroken:
                        logger.warning("client %s sent garbage: %s", self.peer, ev.error)
                        broken = True
                if not srv.after_batch() or (srv.fsync_always and not await self._commit()):
                    self._unstored()
                    broken = True
                await self.flush()
                if broken:
                    break
            nursery.cancel_scope.cancel()

    async def _drain(self) -> None:
        """Replies to pipelined requests queued up past ``server.window``: send them
        before handling the next request, so a client that sends many requests and
        reads nothing holds the server's memory to about one window (the probe: 36 KB
        of pipelined ``get_value`` of a 1 MB value cost 1.8 GB). The batch's changes are
        handed to the OS first, as before every send."""
        srv = self.server
        if not srv.after_batch() or (srv.fsync_always and not await self._commit()):
            self._unstored()
            await self.flush()
            self.abort()
            return
        await self.flush()
        while self.proto.out_bytes > self.window:  # the writer task is sending
            self.wakeup.set()
            await self.drained.wait()

    async def _commit(self) -> bool:
        """``fsync: always``: make the batch durable; False if the disk refused."""
        st = self.server.storage
        was_ok = st.error is None
        try:
            await st.commit()
        except (StorageError, OSError) as exc:
            logger.error("state: cannot make a batch durable: %s", exc)
            return not was_ok  # see Server.after_batch
        return True

    def _unstored(self) -> None:
        """The state directory did not take this batch's changes: its replies must not
        reach the client as acknowledgements. Drop them and close the connection with
        the reason; the client's retries are refused with a StorageError until the
        disk takes writes again (the changes themselves are kept and written then)."""
        self.proto.data_to_send()  # dropped: not acknowledged
        self.proto.error(
            None,
            StorageError("this node could not store the last changes; writes are refused"),
        )

    def handle(self, req: Request) -> None:
        """Run one request, or hold it behind one that waits (see module docstring)."""
        srv = self.server
        cmd = srv.commands.get(req.action)
        if self.held is None:
            if (
                cmd is not None
                and cmd[1] == "sync"
                and (self.user is not None or not srv.auth_required)
                and srv.serving
            ):
                # the hot path (get, set, ...): run it here and now
                n = self.n_requests = self.n_requests + 1
                t0 = 0.0 if n % SAMPLE else perf_counter()  # /metrics: 1 in SAMPLE is timed
                try:
                    self.proto.reply(req.seq, cmd[0](srv, self, req.msg))
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the session
                    self._fail(req, exc)
                srv.metrics.done(req.action, t0)
                return
            if (cmd is not None and cmd[1] == "async") or (
                req.action not in UNGATED and not srv.serving
            ):
                self.held = deque([req])
                self.nursery.start_soon(self._run_held)
                return
        elif req.action not in OVERTAKING:
            self.held.append(req)
            return
        self.execute(req)

    def execute(self, req: Request) -> None:
        """Run a request that does not wait; errors become error replies, never a
        crashed server."""
        seq = req.seq
        n = self.n_requests = self.n_requests + 1
        t0 = 0.0 if n % SAMPLE else perf_counter()
        try:
            fn, kind = self._command(req)
            if kind == "stream":
                self.start_stream(seq, fn, req.msg)
            else:
                self.proto.reply(seq, fn(self.server, self, req.msg))
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the session
            self._fail(req, exc)
        self.server.metrics.done(req.action, t0)

    def _command(self, req: Request) -> tuple[Any, str]:
        cmd = self.server.commands.get(req.action)
        if cmd is None:
            raise UnknownActionError(f"unknown action {req.action!r}")
        if self.user is None and self.server.auth_required and req.action not in OPEN_ACTIONS:
            raise ClientAuthRequiredError(f"You need to log in using: {self.server.auth_method}")
        return cmd

    def _fail(self, req: Request, exc: BaseException) -> None:
        """The one place where a request's exception becomes its error reply."""
        if not isinstance(exc, DistKVError):
            logger.error("error handling %r from %s", req.action, self.peer, exc_info=exc)
        self.proto.error(req.seq, exc)

    async def _run_held(self) -> None:
        """Work through held requests in order; new ones queue behind."""
        srv = self.server
        held = self.held
        while held:
            req = held[0]
            try:
                if req.action not in UNGATED and not srv.serving:
                    await srv.wait_ready()
                fn, kind = self._command(req)
                if kind == "async":
                    t0 = perf_counter()
                    self.proto.reply(req.seq, await fn(srv, self, req.msg))
                    srv.metrics.done(req.action, t0)
                else:
                    held.popleft()
                    self.execute(req)
                    if not srv.after_batch():
                        break
                    self.wakeup.set()
                    continue
            except NotReadyError as exc:
                self.proto.error(req.seq, exc)
            except Exception as exc:  # noqa: BLE001
                self._fail(req, exc)
            held.popleft()
            if not srv.after_batch():
                break
            self.wakeup.set()
        else:
            self.held = None
            return
        self._unstored()  # the disk did not take what these requests changed
        await self.flush()
        self.abort()

    def logout(self, why: str) -> None:
        """This session's login no longer holds (see ``Server._recheck_logins``): keep
        the connection, drop its rights and end its streams."""
        logger.info("client %s (%s) loses its login: %s", self.peer, self.user, why)
        self.user = self.auth_method = self.acl = self.conv = None
        for seq in list(self.tasks):
            self._drop_stream(seq)
            self.credit_wait.pop(seq, None)
            self.proto.error(seq, ClientAuthRequiredError(why), end_stream=True)
        self.wakeup.set()

    # --- streams

    def start_stream(self, seq: Any, fn, msg: dict) -> None:
        if type(seq) is not int:
            raise ClientError("a stream request needs an integer seq")
        if seq in self.tasks:
            raise ClientError(f"seq {seq} is already in use")
        scope = trio.CancelScope()
        self.tasks[seq] = scope
        self.proto.stream_start(seq, msg.get("credit"))
        self.nursery.start_soon(self._run_stream, seq, fn, msg, scope)

    async def _run_stream(self, seq: int, fn, msg: dict, scope: trio.CancelScope) -> None:
        try:
            with scope:
                try:
                    await fn(self.server, self, msg)
                    self.proto.stream_end(seq)
                except DistKVError as exc:
                    self.proto.error(seq, exc, end_stream=True)
                except Exception as exc:  # noqa: BLE001
                    logger.exception("error in stream %r", msg.get("action"))
                    self.proto.error(seq, exc, end_stream=True)
                self.wakeup.set()
        finally:
            self.tasks.pop(seq, None)
            self.credit_wait.pop(seq, None)
            w = self.watchers.pop(seq, None)
            if w is not None:
                self.server.watches.remove(w)

    def stop_stream(self, seq: int) -> bool:
        scope = self._drop_stream(seq)
        self.credit_wait.pop(seq, None)
        if scope is None:
            return False
        if self.proto.stream_drop(seq):
            self.send({"seq": seq, "state": "end"})
        return True
