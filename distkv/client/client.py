"""Client side of the protocol, on trio: a thin shell around :class:`ClientProtocol`.

The protocol object (``distkv/wire/protocol.py``) owns sequence numbers, stream state
and credit; this module moves bytes and wakes tasks, and keeps a long-lived client
connected.

**Reading** is done by whichever task needs data ("leader/follower"): a task waiting
for a reply, or a stream consumer waiting for its next item, reads the socket itself if
nobody else is, handles everything that arrived, and on getting what it waited for
hands the reader role to another waiting task. A sequential caller thus sends and
receives in its own task with no task switch per call, which is most of the cost of a
round trip. Stream items are buffered per stream by the protocol (bounded by the
credit we granted), so the reader never waits for a consumer: a request made while
iterating a stream cannot deadlock.

**Reconnecting**: ``connect.servers`` (or ``host``/``port``) names one or more nodes.
When the connection breaks, the client connects again (the same node or another, with
backoff from 0.1 s to 5 s) and logs in again. Requests in flight at that moment are
sent again if doing them twice does no harm (reads, unconditional sets and deletes);
the others (a ``set`` with a chain: the first may have been applied) fail with
:class:`ServerClosedError`. New requests wait for the new connection; watches resume
(see :mod:`.resume`). One warning per outage, one line when back.
``connect.reconnect: false`` turns this off.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from .. import config as _config
from ..busypoll import default_budget_us
from ..core.path import as_path
from ..core.types import NotGiven
from ..exceptions import (
    ClientError,
    DistKVError,
    ServerClosedError,
    error_from_wire,
)
from ..groups import unwrap_group
from ..result import attrdict
from ..wire.protocol import (
    ClientProtocol,
    ConnectionBroken,
    Greeting,
    Reply,
    StreamActivity,
    StreamEnded,
)
from ..wire.transport import Transport
from .resume import WatchResume

logger = logging.getLogger(__name__)

#: Requests sent again on the new connection if the old one broke under them: reads,
#: and writes whose effect is the same if done twice (unconditional set/delete).
IDEMPOTENT = frozenset({"get_value", "list", "ping", "get_state", "delete_tree"})
IDEMPOTENT_WITHOUT_CHAIN = frozenset({"set_value", "delete_value"})

_TAKE_OVER = object()  # "nobody is reading now: you read" (see _Conn.wait)


class _Waiter:
    """One task waiting on a connection. The reply may arrive while the task is
    still inside ``send`` (not parked yet): then it is stored in ``reply`` and picked
    up without sleeping; only a parked task may be rescheduled."""

    __slots__ = ("task", "reply", "parked")

    def __init__(self, task):
        self.task = task
        self.reply = None
        self.parked = False

    def deliver(self, result: outcome.Outcome) -> None:
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task, result)
        else:
            self.reply = result


class _Conn:
    """One transport to one server, with its protocol state."""

    def __init__(self, stream: trio.abc.Stream, address: str, busy_poll: float):
        self.transport = Transport(stream, busy_poll)
        self.address = address
        self.proto = ClientProtocol()
        self.waiting: dict[int, _Waiter] = {}  # request seq -> waiter
        self.consumers: dict[int, _Waiter] = {}  # stream seq -> waiting consumer
        self.reader_busy = False
        self.sending = False
        self.closed: DistKVError | None = None
        self.lost = trio.Event()

    @property
    def label(self) -> str:
        """``node NAME at HOST:PORT`` for messages."""
        g = self.proto.greeting
        return f"node {g.get('node')} at {self.address}" if g else self.address

    # --- reading

    async def read_once(self) -> None:
        """Receive one chunk and deliver every event in it."""
        self.reader_busy = True
        try:
            try:
                poller = self.transport.poller
                if poller is not None:
                    # Poll only for a lone request: with many in flight, sleeping lets
                    # their successors pile up into bigger batches.
                    data = await poller.receive_some(65536, len(self.waiting) == 1)
                else:
                    data = await self.transport.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.fail(ServerClosedError(f"connection to {self.label} lost: {exc}"))
                return
            if not data:
                self.fail(ServerClosedError(f"{self.label} closed the connection"))
                return
            waiting = self.waiting
            for ev in self.proto.receive_data(data):
                t = type(ev)
                if t is Reply:
                    w = waiting.pop(ev.seq, None)
                    if w is not None:
                        w.deliver(outcome.Value(ev.msg))
                elif t is StreamActivity:
                    w = self.consumers.pop(ev.seq, None)
                    if w is not None:
                        w.deliver(outcome.Value(None))
                elif t is ConnectionBroken:
                    self.fail(ev.error)
                elif t is Greeting:
                    pass  # kept by the protocol object
        finally:
            self.reader_busy = False
            self.handoff()

    def handoff(self) -> None:
        """The reader role is free: give it to a parked task, if any."""
        if self.closed is not None:
            return
        for waiters in (self.waiting, self.consumers):
            for w in waiters.values():
                if w.parked:
                    w.deliver(outcome.Value(_TAKE_OVER))
                    return

    async def wait(self, w: _Waiter, table: dict, key: int) -> Any:
        """Wait until ``w`` gets a result (reading ourselves when nobody else does)."""
        try:
            while w.reply is None:
                if self.closed is not None:
                    table.pop(key, None)
                    raise ServerClosedError(str(self.closed))
                if not self.reader_busy:
                    await self.read_once()
                    continue

                def abort(_raise_cancel):
                    table.pop(key, None)
                    w.parked = False
                    return trio.lowlevel.Abort.SUCCEEDED

                w.parked = True
                res = await trio.lowlevel.wait_task_rescheduled(abort)
                if res is not _TAKE_OVER:
                    return res
            return w.reply.unwrap()
        except BaseException:
            table.pop(key, None)
            raise

    def fail(self, exc: DistKVError) -> None:
        if self.closed is not None:
            return
        self.closed = exc
        for w in list(self.waiting.values()):
            # one outcome per waiter: an outcome can be unwrapped only once
            w.deliver(outcome.Error(ServerClosedError(str(exc))))
        self.waiting.clear()
        self.proto.connection_lost(exc)
        for w in list(self.consumers.values()):
            w.deliver(outcome.Value(None))
        self.consumers.clear()
        self.lost.set()

    # --- writing

    async def flush(self) -> None:
        """Send what the protocol queued (ours and other tasks' requests, credit)."""
        if self.sending:
            return  # the task that is sending picks it up
        self.sending = True
        proto = self.proto
        try:
            while True:
                buf = proto.data_to_send()
                if not buf:
                    break
                sent = self.transport.send_now(buf)
                if sent == len(buf):
                    # Yield, as send_all would, so that requests of other tasks pile up
                    # for the next write; shielded, since the loop must not stop while
                    # they wait in the buffer.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                # The kernel did not take it all. A send cut short by cancellation
                # would corrupt the stream: shield it, but bounded, so a server that
                # stops reading cannot hang us forever.
                with trio.move_on_after(30) as scope:
                    scope.shield = True
                    await self.transport.send_all(buf[sent:])
                if scope.cancelled_caught:
                    self.fail(ServerClosedError(f"{self.address} stopped reading our requests"))
                    await self.aclose()
                    raise ServerClosedError(f"{self.address} stopped reading our requests")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.fail(ServerClosedError(f"connection to {self.label} lost: {exc}"))
            raise ServerClosedError(str(self.closed)) from None
        finally:
            self.sending = False

    async def aclose(self) -> None:
        await self.transport.aclose()


class StreamCall:
    """A running stream (``get_tree``, ``watch``): async-iterable, and an async
    context manager that stops the stream on exit.

    Items are :class:`attrdict` maps; the ``uptodate`` marker of a watch is yielded as
    ``{"state": "uptodate"}`` (it has no ``path``). A watch survives reconnects (see
    :mod:`.resume`); a ``get_tree`` whose connection breaks raises
    :class:`ServerClosedError`.
    """

    def __init__(self, client: Client, action: str, params: dict):
        self.client = client
        self.action = action
        self.params = params
        self.conn: _Conn | None = None
        self.seq: int | None = None
        self.done = False
        self.resume: WatchResume | None = None
        if action == "watch" and client.reconnects:
            self.resume = WatchResume(bool(params.get("fetch")))
        self._ready: deque[dict] = deque()

    async def _start(self) -> None:
        if self.seq is not None:
            return
        conn = await self.client._connection()
        self.conn = conn
        self.seq = conn.proto.start_stream(self.action, self.params)
        await conn.flush()

    async def _restart(self) -> None:
        """The connection broke under a watch: watch again (with fetch) on the next."""
        self.seq = None
        self.params = dict(self.params, fetch=True)
        self._ready.extend(self.resume.begin())
        await self._start()

    async def __aenter__(self) -> StreamCall:
        await self._start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.done or self.seq is None:
            self.done = True
            return
        self.done = True
        conn = self.conn
        if conn.closed is not None:
            return
        stop = conn.proto.stop_stream(self.seq)
        if stop is None:
            return
        with trio.move_on_after(5) as scope:
            scope.shield = True
            w = _Waiter(trio.lowlevel.current_task())
            conn.waiting[stop] = w
            try:
                await conn.flush()
                await conn.wait(w, conn.waiting, stop)
            except DistKVError:
                pass

    def __aiter__(self) -> StreamCall:
        return self

    async def __anext__(self) -> attrdict:
        # A plain __anext__ instead of an async generator: abandoning the loop early
        # must not leave a half-run generator for the garbage collector.
        await self._start()
        ready = self._ready
        while True:
            if ready:
                return attrdict(ready.popleft())
            if self.done:
                raise StopAsyncIteration
            conn = self.conn
            proto = conn.proto
            try:
                msg = proto.next_item(self.seq)
            except StreamEnded:
                self.done = True
                raise StopAsyncIteration from None
            except ServerClosedError:
                if self.resume is None:
                    self.done = True
                    raise
                await self._restart()
                continue
            except DistKVError:
                self.done = True
                raise
            if proto.has_output:
                await conn.flush()  # the credit we just granted
            if msg is None:
                w = _Waiter(trio.lowlevel.current_task())
                conn.consumers[self.seq] = w
                await conn.wait(w, conn.consumers, self.seq)
                continue
            if self.resume is None:
                return attrdict(msg)
            ready.extend(self.resume.item(msg))


class PendingReply:
    """A request already on its way (:meth:`Client.send_nowait`); ``await
    pending.result()`` (exactly once) for the reply.

    Why: a synchronous caller (a bus message handler, which must not block) can send a
    request the moment it decides to, instead of waking a task to do it: that task
    switch costs a scheduler round (~0.4 ms p50 on the gateway's path) before the
    request even leaves. Only the wait for the reply needs a task.
    """

    __slots__ = ("_client", "_conn", "_action", "_params", "_seq", "_w", "_rest", "_queued")

    def __init__(self, client: Client, action: str, params: dict) -> None:
        self._client = client
        self._action = action
        self._params = params
        self._conn: _Conn | None = None
        self._seq = 0
        self._w: _Waiter | None = None
        self._rest: bytes | None = None  # what the kernel did not take (we hold `sending`)
        self._queued = False  # left in the protocol's output for the next flush

    def _send(self, conn: _Conn) -> None:
        """Queue the request and offer it to the kernel at once, unless another task is
        in the middle of sending (it picks ours up after its current write)."""
        seq = conn.proto.send_request(self._action, self._params)
        # the task is set by result(); a reply that comes first is kept in `reply`
        w = _Waiter(None)
        conn.waiting[seq] = w
        self._conn, self._seq, self._w = conn, seq, w
        if conn.sending or conn.transport.raw is None:
            # another task is writing (it sends ours next), or no plain socket (TLS,
            # in-memory streams): the next flush sends it, at the latest result()'s
            self._queued = True
            return
        buf = conn.proto.data_to_send()
        try:
            sent = conn.transport.send_now(buf)
        except trio.BrokenResourceError as exc:
            conn.fail(ServerClosedError(f"connection to {conn.label} lost: {exc}"))
            return
        if sent < len(buf):
            # nobody else may write before the rest: result() sends it
            conn.sending = True
            self._rest = buf[sent:]

    def __del__(self) -> None:
        # Dropped without result() while holding part of a request: the stream cannot
        # go on (no other request may be written before the rest), so give the
        # connection up; the client reconnects. Never happens when result() is awaited.
        if self._rest is not None and self._conn is not None:
            self._conn.sending = False
            self._conn.fail(ServerClosedError("a request was abandoned half sent"))

    async def _send_rest(self) -> None:
        conn, rest = self._conn, self._rest
        self._rest = None
        try:
            with trio.move_on_after(30) as scope:
                scope.shield = True
                await conn.transport.send_all(rest)
            if scope.cancelled_caught:
                conn.fail(ServerClosedError(f"{conn.address} stopped reading our requests"))
                await conn.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            conn.fail(ServerClosedError(f"connection to {conn.label} lost: {exc}"))
        finally:
            conn.sending = False
        if conn.closed is None:
            await conn.flush()  # what other tasks queued meanwhile

    async def result(self) -> attrdict:
        """The reply (a server error is raised here, as by :meth:`Client.request`). A
        broken connection is handled as there: idempotent requests are asked again on
        the next connection, the others raise :class:`ServerClosedError`."""
        client, action, params = self._client, self._action, self._params
        conn = self._conn
        if conn is None:  # not connected when it was made: an ordinary request now
            return await client.request(action, **params)
        w = self._w
        w.task = trio.lowlevel.current_task()
        try:
            if self._rest is not None:
                await self._send_rest()
            elif self._queued:
                await conn.flush()
            msg = await conn.wait(w, conn.waiting, self._seq)
        except ServerClosedError:
            conn.waiting.pop(self._seq, None)
            if not client.reconnects or not (
                action in IDEMPOTENT
                or (action in IDEMPOTENT_WITHOUT_CHAIN and "chain" not in params)
            ):
                raise
            while True:
                params.pop("seq", None)
                conn = await client._connection()
                try:
                    return await client._request_on(conn, action, params)
                except ServerClosedError:
                    if client._closing:
                        raise
        if "error" in msg:
            raise error_from_wire(msg)
        del msg["seq"]
        return attrdict(msg)


class Client:
    """A connection to DistKV (one node at a time). Create it with :func:`open_client`."""

    def __init__(self, cfg: dict, *, stream: trio.abc.Stream | None = None):
        self.cfg = cfg
        c = cfg["connect"]
        self._servers = _config.server_list(c)
        self._given_stream = stream
        self.reconnects = stream is None and bool(c.get("reconnect", True))
        budget = c.get("busy_poll")
        self._busy_poll = default_budget_us(client=True) if budget is None else float(budget)
        self._init_timeout = float(c.get("init_timeout") or 5)
        self._conn: _Conn | None = None
        self._connected = trio.Event()
        self._closing = False
        self._login: dict | None = None  # resolved login message, for reconnects
        self.server_info: attrdict = attrdict()
        self.user: str | None = None

    @property
    def node(self) -> str | None:
        """The name of the server node we are connected to."""
        return self.server_info.get("node")

    # --- connection ---

    async def _open(self, host: str, port: int) -> _Conn:
        """Connect to one server and read its greeting (and log in, on reconnects)."""
        c = self.cfg["connect"]
        address = f"{host}:{port}"
        if self._given_stream is not None:
            stream, self._given_stream = self._given_stream, None
        else:
            try:
                with trio.fail_after(self._init_timeout):
                    stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise ServerClosedError(
                    f"cannot connect to DistKV at {address}: {exc.strerror or exc}"
                ) from None
            except trio.TooSlowError:
                raise ServerClosedError(f"timeout connecting to DistKV at {address}") from None
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx = _config.client_ssl_context(c)
            if ctx is not None:
                stream = trio.SSLStream(stream, ctx, server_hostname=host)
        conn = _Conn(stream, address, self._busy_poll)
        try:
            with trio.fail_after(self._init_timeout):
                while conn.proto.greeting is None and conn.closed is None:
                    await conn.read_once()
        except trio.TooSlowError:
            await conn.aclose()
            raise ServerClosedError(
                f"{address} did not greet us (not a DistKV server, or TLS expected?)"
            ) from None
        if conn.closed is not None:
            await conn.aclose()
            raise ServerClosedError(f"{address} closed the connection: {conn.closed}")
        if self._login is not None:
            res = await self._request_on(conn, "auth", dict(self._login))
            self.user = res.user
        return conn

    def _use(self, conn: _Conn) -> None:
        self._conn = conn
        self.server_info = attrdict(conn.proto.greeting)
        self._connected.set()

    async def _connect_first(self) -> None:
        """The first connection: each server once; failing that, the last error."""
        err: DistKVError | None = None
        for host, port in self._servers:
            try:
                conn = await self._open(host, port)
            except ServerClosedError as exc:
                err = exc
                continue
            self._use(conn)
            return
        raise err

    async def _keep_connected(self) -> None:
        """Background task: on each loss, connect again with backoff, any server."""
        while True:
            conn = self._conn
            await conn.lost.wait()
            if self._closing:
                return
            self._connected = trio.Event()
            logger.warning("%s; reconnecting", conn.closed)
            await conn.aclose()
            delay = 0.1
            start = trio.current_time()
            # the node we lost last, others first
            order = [s for s in self._servers if f"{s[0]}:{s[1]}" != conn.address]
            order += [s for s in self._servers if f"{s[0]}:{s[1]}" == conn.address]
            while True:
                new = None
                for host, port in order:
                    try:
                        new = await self._open(host, port)
                        break
                    except DistKVError as exc:
                        logger.debug("reconnect to %s:%s failed: %s", host, port, exc)
                if new is not None:
                    break
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
            self._use(new)
            logger.warning(
                "reconnected to %s (node %s) after %.1f s",
                new.address,
                self.node,
                trio.current_time() - start,
            )

    async def _connection(self) -> _Conn:
        """The current connection, waiting for a reconnect if it is broken."""
        conn = self._conn
        if conn is not None and conn.closed is None:
            return conn
        if not self.reconnects or self._closing:
            raise ServerClosedError(str(conn.closed) if conn is not None else "not connected")
        while True:
            await self._connected.wait()
            conn = self._conn
            if conn.closed is None:
                return conn

    # --- requests ---

    async def _request_on(self, conn: _Conn, action: str, params: dict) -> attrdict:
        seq = conn.proto.send_request(action, params)
        w = _Waiter(trio.lowlevel.current_task())
        conn.waiting[seq] = w
        try:
            await conn.flush()
        except BaseException:
            conn.waiting.pop(seq, None)
            raise
        msg = await conn.wait(w, conn.waiting, seq)
        if "error" in msg:
            raise error_from_wire(msg)
        del msg["seq"]
        return attrdict(msg)

    async def request(self, action: str, **params: Any) -> attrdict:
        """Send one request and return the reply; a server error is raised here."""
        conn = self._conn
        if conn is None or conn.closed is not None:
            conn = await self._connection()
        # _request_on, inlined: this is every get/set's path, and each frame of the
        # await chain costs on every resume (several per round trip with busy polling)
        seq = conn.proto.send_request(action, params)
        w = _Waiter(trio.lowlevel.current_task())
        waiting = conn.waiting
        waiting[seq] = w
        try:
            await conn.flush()
            while w.reply is None:
                if conn.closed is not None:
                    raise ServerClosedError(str(conn.closed))
                if not conn.reader_busy:
                    await conn.read_once()
                    continue

                def abort(_raise_cancel):
                    waiting.pop(seq, None)
                    w.parked = False
                    return trio.lowlevel.Abort.SUCCEEDED

                w.parked = True
                msg = await trio.lowlevel.wait_task_rescheduled(abort)
                if msg is not _TAKE_OVER:
                    break
            else:
                msg = w.reply.unwrap()
        except ServerClosedError:
            waiting.pop(seq, None)
            if not self.reconnects or not (
                action in IDEMPOTENT
                or (action in IDEMPOTENT_WITHOUT_CHAIN and "chain" not in params)
            ):
                raise
            while True:  # harmless to repeat: ask again on the next connection
                params.pop("seq", None)
                # raises once the client is closing: never a loop without a connection
                conn = await self._connection()
                try:
                    return await self._request_on(conn, action, params)
                except ServerClosedError:
                    if self._closing:
                        raise
        except BaseException:
            waiting.pop(seq, None)
            raise
        if "error" in msg:
            raise error_from_wire(msg)
        del msg["seq"]
        return attrdict(msg)

    def send_nowait(self, action: str, **params: Any) -> PendingReply:
        """Send a request now, from synchronous code, without waiting for anything;
        ``await pending.result()`` exactly once for the reply.

        The request leaves within this call when the connection is up and the kernel
        takes it (the usual case: "kernel-first" send); while another task is writing,
        it goes out right after that write; without a plain socket (TLS, in-memory
        streams) with the next flush of any task, at the latest in ``result()``; with
        no connection, ``result()`` sends it once there is one. The server handles the
        requests of one connection in the order they were sent. Raises only for a
        request that cannot be encoded."""
        pending = PendingReply(self, action, params)
        conn = self._conn
        if conn is not None and conn.closed is None:
            pending._send(conn)
        return pending

    def set_nowait(self, path: Any, value: Any, *, chain: Any = NotGiven) -> PendingReply:
        """:meth:`set`, sent at once from synchronous code (see :meth:`send_nowait`)."""
        p: dict[str, Any] = {"path": as_path(path), "value": value}
        if chain is not NotGiven:
            p["chain"] = chain
        return self.send_nowait("set_value", **p)

    # --- the API ---

    async def get(self, path: Any, *, nchain: int = 0) -> attrdict:
        """Read one entry: ``res.value`` (absent if there is none), ``res.tock``,
        ``res.chain`` with ``nchain`` > 0."""
        p = {"path": as_path(path)}
        if nchain:
            p["nchain"] = nchain
        return await self.request("get_value", **p)

    async def set(
        self, path: Any, value: Any = NotGiven, *, chain: Any = NotGiven, **kw: Any
    ) -> attrdict:
        """Write a value. ``chain=None`` requires a new entry; a chain from ``get``
        requires that nobody changed the entry since (else ``ClientChainError``).
        Returns ``res.chain`` (the new chain) and ``res.tock``."""
        if value is NotGiven:
            if "value" not in kw:
                raise ClientError("set needs a value")
            value = kw.pop("value")
        if kw:
            raise ClientError(f"unknown arguments: {', '.join(kw)}")
        p: dict[str, Any] = {"path": as_path(path), "value": value}
        if chain is not NotGiven:
            p["chain"] = chain
        return await self.request("set_value", **p)

    async def delete(
        self, path: Any, *, chain: Any = NotGiven, recursive: bool = False
    ) -> attrdict:
        """Delete one entry (or, with ``recursive``, every value below ``path``)."""
        if recursive:
            return await self.request("delete_tree", path=as_path(path))
        p: dict[str, Any] = {"path": as_path(path)}
        if chain is not NotGiven:
            p["chain"] = chain
        return await self.request("delete_value", **p)

    async def list(self, path: Any = ()) -> list:
        """The names of the children of ``path`` (that have data below them)."""
        res = await self.request("list", path=as_path(path))
        return list(res.children)

    def get_tree(
        self, path: Any = (), *, min_depth: int = 0, max_depth: int = -1, nchain: int = 0
    ) -> StreamCall:
        """Iterate over every entry with a value below ``path``; paths are relative."""
        return StreamCall(
            self,
            "get_tree",
            {"path": as_path(path), "min_depth": min_depth, "max_depth": max_depth, "nchain": nchain},
        )

    def watch(
        self,
        path: Any = (),
        *,
        fetch: bool = False,
        min_depth: int = 0,
        max_depth: int = -1,
        nchain: int = 0,
    ) -> StreamCall:
        """Watch ``path`` and below. With ``fetch`` the current state comes first,
        then ``{"state": "uptodate"}``, then every change (paths relative to ``path``).
        Deletions arrive without ``value``."""
        return StreamCall(
            self,
            "watch",
            {
                "path": as_path(path),
                "fetch": fetch,
                "min_depth": min_depth,
                "max_depth": max_depth,
                "nchain": nchain,
            },
        )

    def mirror(self, path: Any, *, root_type: type | None = None, **kw: Any):
        """Keep a live local copy of a subtree; see :mod:`distkv.obj`."""
        from ..obj import mirror

        return mirror(self, as_path(path), root_type=root_type, **kw)

    async def ping(self) -> attrdict:
        return await self.request("ping")

    async def get_state(self) -> attrdict:
        return await self.request("get_state")

    async def login(self, message: dict) -> attrdict:
        """Log in with a resolved ``auth`` message; repeated after each reconnect."""
        res = await self.request("auth", **dict(message))
        self._login = dict(message)
        self.user = res.user
        return res

    async def aclose(self) -> None:
        self._closing = True
        if self._conn is not None:
            self._conn.fail(ServerClosedError("the client was closed"))
            await self._conn.aclose()


@asynccontextmanager
async def open_client(
    cfg: Mapping | None = None, *, _stream: trio.abc.Stream | None = None, **kw: Any
) -> AsyncIterator[Client]:
    """Connect to a DistKV server.

    With no arguments this uses the same configuration as the CLI (config files,
    ``DISTKV_CONFIG``), defaulting to 127.0.0.1:27586. A partial config merges over
    it: ``open_client(connect={"host": h, "port": p})``. A full config (as the CLI
    builds it) can be passed as ``cfg``. Settings of the ``connect`` section may be
    given directly: ``open_client(port=27587, auth="password name=joe ...")``.
    ``connect.servers`` lists several nodes to fall back on; the client reconnects
    when its node goes away.
    """
    # connection settings may be given directly: open_client(port=..., auth=...)
    direct = {k: kw.pop(k) for k in list(kw) if k in _config.DEFAULTS["connect"]}
    if direct:
        kw["connect"] = {**kw.get("connect", {}), **direct}
    if cfg is None:
        cfg = _config.load(extra=kw)
    elif kw:
        cfg = _config.merge(dict(cfg), kw)
    client = Client(dict(cfg), stream=_stream)
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            try:
                await client._connect_first()
                auth = client.cfg["connect"].get("auth")
                if auth:
                    from ..auth.base import login_message

                    await client.login(login_message(auth))
                if client.reconnects:
                    nursery.start_soon(client._keep_connected)
                yield client
            finally:
                nursery.cancel_scope.cancel()
                await client.aclose()
