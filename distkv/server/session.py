"""One client connection: read requests, run them, write replies.

The hot path is deliberately synchronous: every message a read delivers is decoded
and handled without a task switch (``get``/``set`` never await), their replies are
queued, the change log is flushed to the OS once for the whole batch, and all replies
go out in one write. Only streams (``get_tree``, ``watch``) run as tasks.

Flow control: everything queued for a client counts against ``server.window`` bytes.
Replies to requests never overflow (the client asked for them and we stop reading its
requests while we cannot send), but live watch events do: when a client lets more than
the window pile up, its watches are ended with a ``StreamOverflowError`` and the queued
events are dropped, so a slow watcher cannot grow the server's memory or slow anybody
else down.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from ..busypoll import BusyPoller
from ..core.types import unwrap_group
from ..exceptions import (
    ClientAuthRequiredError,
    ClientError,
    DistKVError,
    ProtocolError,
    StreamOverflowError,
    UnknownActionError,
    error_to_wire,
)
from ..wire import codec

if TYPE_CHECKING:
    from .server import Server
    from .watch import Watcher

logger = logging.getLogger(__name__)

_UNPACK_ERRORS = (
    msgpack.exceptions.ExtraData,
    msgpack.exceptions.FormatError,
    msgpack.exceptions.StackError,
    msgpack.exceptions.BufferFull,
    ValueError,
    TypeError,
)


class Session:
    """Server side of one client connection."""

    def __init__(self, server: Server, stream: trio.abc.Stream, peer: str = "?"):
        self.server = server
        self.stream = stream
        # a stdlib socket on a duplicate of a plain TCP stream's fd, so that a reply the
        # kernel takes at once skips trio's send machinery (None: TLS, memory streams)
        self.raw: socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            try:
                self.raw = socket.socket(fileno=os.dup(stream.socket.fileno()))
            except OSError:
                self.raw = None
        self.peer = peer
        self.packer = codec.packer()
        self.outbuf: list[bytes] = []
        self.outbytes = 0
        self.sending = False
        self.wakeup = trio.Event()
        self.drained = trio.Event()
        self.tasks: dict[int, trio.CancelScope] = {}
        self.watchers: dict[int, Watcher] = {}
        self.user: str | None = None
        self.auth_method: str | None = None
        self.acl = None
        self.conv = None  # the user's codec converter (distkv.core.codecs), if any
        self.closed = False
        self.nursery: trio.Nursery | None = None
        self.window = int(server.cfg["server"]["window"])

    # --- output ---

    def send(self, msg: dict) -> None:
        """Queue a reply; the batch is written once the current read is handled."""
        data = self.packer.pack(msg)
        self.outbuf.append(data)
        self.outbytes += len(data)

    def send_stream(self, w: Watcher, msg: dict) -> None:
        """Queue a live stream event, subject to the flow-control window."""
        if not w.active or self.closed:
            return
        if self.outbytes > self.window:
            self.overflow()
            return
        try:
            self.send(msg)
        except (TypeError, ValueError) as exc:  # pragma: no cover - values come from msgpack
            logger.error("cannot encode watch event: %r", exc)
            return
        if not self.sending:
            self.wakeup.set()

    def overflow(self) -> None:
        """The client stopped reading: end its watches, drop what was queued for them."""
        logger.warning(
            "client %s fell %d bytes behind: ending its watches", self.peer, self.outbytes
        )
        self.outbuf.clear()
        self.outbytes = 0
        for seq, w in list(self.watchers.items()):
            self.server.watches.remove(w)
            del self.watchers[seq]
            scope = self.tasks.pop(seq, None)
            if scope is not None:
                scope.cancel()
            self.send(
                {
                    "seq": seq,
                    **error_to_wire(
                        StreamOverflowError(
                            f"watch fell more than {self.window} bytes behind; re-fetch to resync"
                        )
                    ),
                    "state": "end",
                }
            )
        self.wakeup.set()

    async def flush(self) -> None:
        if self.sending:
            return
        self.sending = True
        try:
            while self.outbuf:
                data = b"".join(self.outbuf) if len(self.outbuf) > 1 else self.outbuf[0]
                self.outbuf.clear()
                self.outbytes = 0
                sent = 0
                if self.raw is not None:
                    # offer it to the kernel directly (the usual case: it all fits)
                    try:
                        sent = self.raw.send(data)
                    except BlockingIOError:
                        sent = 0
                    except OSError as exc:
                        raise trio.BrokenResourceError(str(exc)) from exc
                if sent == len(data):
                    await trio.lowlevel.checkpoint()
                else:
                    await self.stream.send_all(data[sent:] if sent else data)
            self.drained.set()
            self.drained = trio.Event()
        finally:
            self.sending = False

    async def wait_writable(self) -> None:
        """Backpressure for bulk streams: wait while the queue is over the window."""
        while self.outbytes > self.window // 2:
            self.wakeup.set()
            await self.drained.wait()

    async def _writer(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            await self.flush()

    # --- input ---

    async def run(self) -> None:
        srv = self.server
        unpacker = codec.unpacker(int(srv.cfg["server"]["max_message"]))
        handle = self.handle
        try:
            with unwrap_group():
                await self._run(srv, unpacker, handle)
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
            if self.raw is not None:
                self.raw.close()
            with trio.CancelScope(shield=True):
                try:
                    await self.stream.aclose()
                except Exception:  # noqa: BLE001 - closing a broken socket
                    pass

    async def _run(self, srv, unpacker, handle) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._writer)
            self.send(srv.greeting(self))
            await self.flush()
            receive = self.stream.receive_some
            budget = srv.busy_poll_us
            if self.raw is not None and budget:
                receive = BusyPoller(self.raw, self.stream, budget).receive_some
            while True:
                data = await receive(65536)
                if not data:
                    break
                try:
                    unpacker.feed(data)
                    for msg in unpacker:
                        handle(msg)
                except _UNPACK_ERRORS as exc:
                    self.send(
                        error_to_wire(
                            ProtocolError(f"undecodable data from client, closing: {exc}")
                        )
                    )
                    logger.warning("client %s sent garbage: %r", self.peer, exc)
                    srv.after_batch()
                    await self.flush()
                    break
                srv.after_batch()
                if srv.fsync_always:
                    await srv.storage.commit()
                await self.flush()
            nursery.cancel_scope.cancel()

    def handle(self, msg: Any) -> None:
        """Run one request; errors become error replies, never a crashed server."""
        if type(msg) is not dict:
            self.send(error_to_wire(ProtocolError("a request must be a map")))
            return
        seq = msg.get("seq")
        try:
            action = msg["action"]
            cmd = self.server.commands.get(action)
            if cmd is None:
                raise UnknownActionError(f"unknown action {action!r}")
            if self.user is None and self.server.auth_required and action not in _OPEN:
                raise ClientAuthRequiredError(
                    f"You need to log in using: {self.server.auth_method}"
                )
            fn, kind = cmd
            if kind == "stream":
                self.start_stream(seq, fn, msg)
            elif kind == "async":
                self.nursery.start_soon(self._run_async, seq, fn, msg)
            else:
                res = fn(self.server, self, msg)
                if res is None:
                    res = {"seq": seq}
                else:
                    res["seq"] = seq
                self.send(res)
        except KeyError as exc:
            self.send({"seq": seq, **error_to_wire(ClientError(f"missing field {exc}"))})
        except DistKVError as exc:
            self.send({"seq": seq, **error_to_wire(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the session
            logger.exception("error handling %r", msg.get("action"))
            self.send({"seq": seq, **error_to_wire(exc)})

    async def _run_async(self, seq: int, fn, msg: dict) -> None:
        """A request that has to wait (a password check in a thread, a file write)."""
        try:
            res = await fn(self.server, self, msg)
            res = {} if res is None else res
            res["seq"] = seq
        except DistKVError as exc:
            res = {"seq": seq, **error_to_wire(exc)}
        except Exception as exc:  # noqa: BLE001
            logger.exception("error handling %r", msg.get("action"))
            res = {"seq": seq, **error_to_wire(exc)}
        self.send(res)
        self.server.after_batch()
        self.wakeup.set()

    def start_stream(self, seq: int, fn, msg: dict) -> None:
        if seq in self.tasks:
            raise ClientError(f"seq {seq} is already in use")
        scope = trio.CancelScope()
        self.tasks[seq] = scope
        self.nursery.start_soon(self._run_stream, seq, fn, msg, scope)

    async def _run_stream(self, seq: int, fn, msg: dict, scope: trio.CancelScope) -> None:
        try:
            with scope:
                try:
                    self.send({"seq": seq, "state": "start"})
                    await fn(self.server, self, msg)
                    self.send({"seq": seq, "state": "end"})
                except DistKVError as exc:
                    self.send({"seq": seq, **error_to_wire(exc), "state": "end"})
                except Exception as exc:  # noqa: BLE001
                    logger.exception("error in stream %r", msg.get("action"))
                    self.send({"seq": seq, **error_to_wire(exc), "state": "end"})
                self.wakeup.set()
        finally:
            self.tasks.pop(seq, None)
            w = self.watchers.pop(seq, None)
            if w is not None:
                self.server.watches.remove(w)

    def stop_stream(self, seq: int) -> bool:
        scope = self.tasks.pop(seq, None)
        w = self.watchers.pop(seq, None)
        if w is not None:
            self.server.watches.remove(w)
        if scope is None:
            return False
        scope.cancel()
        self.send({"seq": seq, "state": "end"})
        return True


# actions allowed before login
_OPEN = frozenset({"auth", "ping"})
