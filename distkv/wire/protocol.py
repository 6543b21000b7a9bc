"""The DistKV client protocol as two sans-IO state machines, one per side.

Why sans-IO (h11's model): sequence numbers, stream state and flow control are the
protocol's hard parts, and they are the same whatever carries the bytes (TCP, TLS, a
memory stream in tests, a WebSocket). Here they are plain objects: bytes go in with
``receive_data``, typed events come out, calls queue bytes that ``data_to_send``
hands to whoever owns the socket. The trio shells (``client/client.py``,
``server/session.py``) only move bytes and wake tasks; property tests drive the two
objects against each other without any socket (``tests/properties/test_protocol_props.py``).

Flow control of streams is by **credit** (counted in stream messages): a client
starting a stream says how many messages it can take (``credit``); the server sends
no more than that until the client grants more with ``{action: "credit", task: SEQ,
n: K}`` (a notification: it has no ``seq`` and no reply). The client grants credit as
its consumer takes items, so a consumer that stops reading pauses its own stream and
nothing else: the reader of the connection never waits for a consumer, and a request
made while iterating a stream (``async for r in c.get_tree(p): await c.get(...)``) is
answered whatever the stream's size. Bulk streams (``get_tree``, a watch's initial
dump) simply wait for credit; live watch events cannot wait, so the server queues them
per stream up to ``event_limit`` bytes and then ends that stream with
``StreamOverflowError`` (the client re-fetches). A stream request without ``credit``
(an old client) is not flow-controlled per stream; the connection's byte window
(``server.window``) still applies.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import msgpack

from ..exceptions import (
    ClientError,
    DistKVError,
    ProtocolError,
    StreamOverflowError,
    ValueTypeError,
    error_from_wire,
    error_to_wire,
)
from . import codec

#: Stream messages a client takes before it must grant more (per stream).
DEFAULT_CREDIT = 256
#: Elements a list or map may announce before the login reply (a login has a few keys).
LOGIN_ARRAY = 16

_UNPACK_ERRORS = (
    ProtocolError,
    msgpack.exceptions.ExtraData,
    msgpack.exceptions.FormatError,
    msgpack.exceptions.StackError,
    msgpack.exceptions.BufferFull,
    ValueError,
    TypeError,
    RecursionError,
)


# --------------------------------------------------------------------------- events


class Greeting(NamedTuple):
    """The server's first message (``seq: 0``): node name, version, auth method, ..."""

    info: dict


class Reply(NamedTuple):
    """The answer to request ``seq``; ``msg`` still holds ``error`` if it is one."""

    seq: int
    msg: dict


class StreamActivity(NamedTuple):
    """Stream ``seq`` has new items, or ended: its consumer should look."""

    seq: int


class Request(NamedTuple):
    """A client's request (server side). ``seq`` is None for a malformed one."""

    seq: Any
    action: str
    msg: dict


class CreditGranted(NamedTuple):
    """The client granted credit for stream ``seq``: a paused producer may go on."""

    seq: int


class StreamOverflowed(NamedTuple):
    """Live events of stream ``seq`` piled up past the limit: the stream was ended
    (the error is already queued); the shell drops its watcher."""

    seq: int


class ConnectionBroken(NamedTuple):
    """The peer sent bytes that are not protocol: the connection is unusable."""

    error: DistKVError


class StreamEnded(Exception):
    """Raised by :meth:`ClientProtocol.next_item` when a stream has no more items."""


# --------------------------------------------------------------------------- client


class _ClientStream:
    __slots__ = ("items", "ended", "error", "window", "taken")

    def __init__(self, window: int):
        self.items: deque = deque()
        self.ended = False
        self.error: DistKVError | None = None
        self.window = window
        self.taken = 0  # items taken since the last credit grant


class ClientProtocol:
    """Client side of one connection.

    >>> p = ClientProtocol()
    >>> seq = p.send_request("get_value", {"path": P("a")})
    >>> sock.send(p.data_to_send())
    >>> for ev in p.receive_data(sock.recv(65536)): ...
    """

    def __init__(self, *, credit: int = DEFAULT_CREDIT):
        self.credit = credit
        self.greeting: dict | None = None
        # the server's request size limit (from its greeting): a bigger request is
        # refused here, instead of the server closing the connection for it
        self._max_message = 1 << 62
        self._seq = 0
        self._packer = codec.packer()
        self._unpacker = codec.unpacker()
        self._out: list[bytes] = []
        self._streams: dict[int, _ClientStream] = {}

    # --- output

    def _pack(self, msg: dict) -> bytes:
        try:
            return self._packer.pack(msg)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise ClientError(f"cannot encode request: {exc}") from None

    def send_request(self, action: str, params: dict) -> int:
        """Queue a request; returns its ``seq``. ``params`` is used as the message."""
        self._seq += 1
        seq = params["seq"] = self._seq
        params["action"] = action
        data = self._pack(params)
        if len(data) > self._max_message:
            raise ValueTypeError(
                f"{action}: the request has {len(data)} bytes, the server takes at most"
                f" {self._max_message} (server.max_message)"
            )
        self._out.append(data)
        return seq

    def start_stream(self, action: str, params: dict) -> int:
        """Queue a stream request (``get_tree``, ``watch``, ...) with our credit."""
        self._seq += 1
        seq = self._seq
        msg = dict(params, seq=seq, action=action, credit=self.credit)
        data = self._pack(msg)
        self._streams[seq] = _ClientStream(self.credit)
        self._out.append(data)
        return seq

    def stop_stream(self, seq: int) -> int | None:
        """Forget stream ``seq`` (its late items are dropped) and, if the server still
        runs it, queue a ``stop``; returns the stop request's seq (or None)."""
        st = self._streams.pop(seq, None)
        if st is None or st.ended:
            return None
        return self.send_request("stop", {"task": seq})

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    # --- streams, consumer side

    def is_stream(self, seq: int) -> bool:
        return seq in self._streams

    def buffered(self, seq: int) -> int:
        """Items of stream ``seq`` received but not taken yet (0 for no such stream).
        Flow control keeps this at most the credit the stream was started with."""
        st = self._streams.get(seq)
        return 0 if st is None else len(st.items)

    def next_item(self, seq: int) -> dict | None:
        """The next item of stream ``seq``, None if none has arrived yet; raises
        :class:`StreamEnded` at the end or the stream's error. Taking items grants
        the server more credit (queued output)."""
        st = self._streams.get(seq)
        if st is None:
            raise StreamEnded
        if st.items:
            item = st.items.popleft()
            st.taken += 1
            if st.taken * 2 >= st.window and not st.ended:
                self._out.append(
                    self._packer.pack({"action": "credit", "task": seq, "n": st.taken})
                )
                st.taken = 0
            return item
        if st.ended:
            del self._streams[seq]
            if st.error is not None:
                raise st.error
            raise StreamEnded
        return None

    # --- input

    def receive_data(self, data: bytes) -> list:
        """Feed bytes from the server; returns the events they complete."""
        events: list = []
        unpacker = self._unpacker
        try:
            unpacker.feed(data)
            for msg in unpacker:
                if type(msg) is not dict:
                    raise ValueError("a message must be a map")
                seq = msg.get("seq")
                st = self._streams.get(seq)
                if st is None:
                    if seq == 0 and self.greeting is None:
                        self.greeting = msg
                        limit = msg.get("max_message")
                        if type(limit) is int and limit > 0:
                            self._max_message = limit
                        events.append(Greeting(msg))
                    else:
                        events.append(Reply(seq, msg))
                    continue
                self._stream_message(seq, st, msg)
                events.append(StreamActivity(seq))
        except _UNPACK_ERRORS as exc:
            events.append(ConnectionBroken(ProtocolError(f"bad data from server: {exc!r}")))
        return events

    def _stream_message(self, seq: int, st: _ClientStream, msg: dict) -> None:
        if "error" in msg:
            st.ended = True
            st.error = error_from_wire(msg)
            return
        state = msg.get("state")
        if state is None:
            del msg["seq"]
            st.items.append(msg)
        elif state == "end":
            st.ended = True
        elif state != "start":
            st.items.append({"state": state})

    def connection_lost(self, error: DistKVError) -> list[int]:
        """The transport ended: every open stream ends with ``error``; returns their seqs."""
        seqs = []
        for seq, st in self._streams.items():
            if not st.ended:
                st.ended = True
                st.error = type(error)(str(error))  # one instance per consumer
                seqs.append(seq)
        return seqs


# --------------------------------------------------------------------------- server


class _ServerStream:
    __slots__ = ("credit", "pending", "pending_bytes", "backlog_bytes")

    def __init__(self, credit: int | None):
        self.credit = credit  # None: not flow-controlled (old client)
        self.pending: deque[bytes] = deque()  # waiting for credit, in order
        self.pending_bytes = 0
        self.backlog_bytes = 0  # of which bulk items (at the front), never an overflow


class ServerProtocol:
    """Server side of one connection.

    ``receive_data`` yields :class:`Request` events (the shell runs them and answers
    with ``reply``/``error``/``stream_*``) plus :class:`CreditGranted` and
    :class:`StreamOverflowed`; malformed input is answered here. Replies are queued
    in the order they are made; ``out_bytes`` is what is queued, for back-pressure.
    """

    def __init__(
        self,
        *,
        max_message: int = codec.MAX_MESSAGE,
        event_limit: int = 4 << 20,
        max_array: int | None = None,
        max_path: int | None = None,
        login_message: int | None = None,
    ):
        """``max_array``/``max_path``: see :func:`codec.unpacker`. ``login_message``:
        until :meth:`unlock`, messages are at most that large and announce at most
        :data:`LOGIN_ARRAY` elements per list or map, so a client that has not logged
        in cannot make the server allocate much (see docs/protocol.md)."""
        self.event_limit = event_limit
        self._packer = codec.packer()
        self._full = (max_message, max_array, max_path)
        #: while locked: the bytes fed that the unpacker has not consumed yet
        self._locked: bytearray | None = None
        self._fed = self._done = 0
        #: the message the client has only partly sent, if any (memory it may hold)
        self._partial: codec.PartialScan | None = None
        if login_message is None:
            self._unpacker = codec.unpacker(max_message, max_array=max_array, max_ext=max_path)
        else:
            self._unpacker = codec.unpacker(
                min(login_message, max_message), max_array=LOGIN_ARRAY, max_ext=max_path
            )
            self._locked = bytearray()
        self._out: list[bytes] = []
        self.out_bytes = 0
        self._streams: dict[int, _ServerStream] = {}
        self.broken = False

    # --- output

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self.out_bytes += len(data)

    def _pack(self, msg: dict) -> bytes | None:
        try:
            return self._packer.pack(msg)
        except (TypeError, ValueError, OverflowError):
            self._packer.reset()
            return None

    def send(self, msg: dict) -> None:
        """Queue any message (greeting, reply); an unencodable reply becomes an error."""
        data = self._pack(msg)
        if data is None:
            data = self._packer.pack(
                {"seq": msg.get("seq"), "error": "server", "message": "cannot encode the reply"}
            )
        self._queue(data)

    def reply(self, seq: Any, result: dict | None) -> None:
        # the hot path of every get/set: one pack, one append
        if result is None:
            result = {"seq": seq}
        else:
            result["seq"] = seq
        try:
            data = self._packer.pack(result)
        except (TypeError, ValueError, OverflowError):
            self._packer.reset()
            data = self._packer.pack(
                {"seq": seq, "error": "server", "message": "cannot encode the reply"}
            )
        self._out.append(data)
        self.out_bytes += len(data)

    def error(self, seq: Any, exc: BaseException, *, end_stream: bool = False) -> None:
        msg = error_to_wire(exc) if seq is None else {"seq": seq, **error_to_wire(exc)}
        if end_stream:
            msg["state"] = "end"
            self._streams.pop(seq, None)
        self.send(msg)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        self.out_bytes = 0
        return data

    # --- streams

    def stream_start(self, seq: int, credit: Any) -> None:
        if type(credit) is not int or credit <= 0:
            credit = None
        self._streams[seq] = _ServerStream(credit)
        self.send({"seq": seq, "state": "start"})

    def stream_end(self, seq: int) -> None:
        """End stream ``seq`` normally; queued live events still go out first."""
        st = self._streams.pop(seq, None)
        if st is None:
            return
        for data in st.pending:  # only on an explicit end: they were already promised
            self._queue(data)
        self.send({"seq": seq, "state": "end"})

    def stream_drop(self, seq: int) -> bool:
        """Forget stream ``seq`` without a message (the client stopped it)."""
        return self._streams.pop(seq, None) is not None

    def pending_bytes(self, seq: int | None = None) -> int:
        """Bytes of stream ``seq`` (None: of all streams) held here until the client
        grants credit: memory a slow client costs besides ``out_bytes``, bounded by
        ``event_limit`` per stream."""
        if seq is None:
            return sum(st.pending_bytes for st in self._streams.values())
        st = self._streams.get(seq)
        return 0 if st is None else st.pending_bytes

    def can_send(self, seq: int) -> bool:
        """Whether a bulk stream may send its next item now (else wait for credit)."""
        st = self._streams.get(seq)
        return st is not None and (st.credit is None or st.credit > 0)

    def stream_item(self, seq: int, msg: dict) -> None:
        """Queue a bulk item; the caller checked :meth:`can_send`."""
        st = self._streams.get(seq)
        if st is None:
            return
        if st.credit is not None:
            st.credit -= 1
        self.send(msg)

    def stream_backlog(self, seq: int, msg: dict) -> None:
        """Queue a bulk item behind whatever the stream holds (a watch's initial dump,
        taken in one pass so that no change slips in): it waits for credit like a live
        event but never counts as an overflow."""
        st = self._streams.get(seq)
        if st is None:
            return
        if st.credit is None or (st.credit > 0 and not st.pending):
            if st.credit is not None:
                st.credit -= 1
            self.send(msg)
            return
        data = self._pack(msg)
        if data is not None:
            st.pending.append(data)
            st.pending_bytes += len(data)
            st.backlog_bytes += len(data)

    def stream_event(self, seq: int, msg: dict) -> StreamOverflowed | None:
        """Queue a live event: sent now if there is credit, else held; past
        ``event_limit`` held bytes the stream ends with ``StreamOverflowError``."""
        st = self._streams.get(seq)
        if st is None:
            return None
        if st.credit is None or (st.credit > 0 and not st.pending):
            if st.credit is not None:
                st.credit -= 1
            self.send(msg)
            return None
        data = self._pack(msg)
        if data is None:
            return None
        st.pending.append(data)
        st.pending_bytes += len(data)
        if st.pending_bytes - st.backlog_bytes <= self.event_limit:
            return None
        del self._streams[seq]
        self.error(
            seq,
            StreamOverflowError(
                f"the stream's reader fell more than {self.event_limit} bytes behind; "
                "re-fetch to resync"
            ),
            end_stream=True,
        )
        return StreamOverflowed(seq)

    def _grant(self, seq: Any, n: Any) -> CreditGranted | None:
        st = self._streams.get(seq)
        if st is None or st.credit is None or type(n) is not int or n <= 0:
            return None
        st.credit += n
        while st.pending and st.credit > 0:
            data = st.pending.popleft()
            st.pending_bytes -= len(data)
            st.backlog_bytes = max(0, st.backlog_bytes - len(data))
            st.credit -= 1
            self._queue(data)
        return CreditGranted(seq)

    # --- input

    @property
    def locked(self) -> bool:
        """Whether the login limits still apply."""
        return self._locked is not None

    @property
    def unfinished_bytes(self) -> int:
        """Bytes of a message the client has only partly sent that are being watched
        (see :class:`codec.PartialScan`); 0 between messages: nothing is kept of a
        complete one."""
        return 0 if self._partial is None else self._partial.size

    def _check_partial(self, fed: int, data: bytes) -> None:
        """The decoder holds an unfinished message: refuse it (ProtocolError) once its
        open lists and maps announce far more elements than it has bytes (see
        :class:`codec.PartialScan`); ``fed``: stream offset of ``data``."""
        scan = self._partial
        if scan is None or scan.start != self._done:
            scan = self._partial = codec.PartialScan(self._done)
        scan.feed(data[scan.start - fed :] if scan.start > fed else data)
        if scan.too_big():
            raise ProtocolError(
                f"an unfinished message announces {scan.announced} elements in "
                f"{scan.size} bytes"
            )

    def unlock(self) -> None:
        """The client logged in: from now on its messages may use the full limits.
        Bytes already received but not yet decoded carry over."""
        rest = self._locked
        if rest is None:
            return
        self._locked = None
        max_message, max_array, max_path = self._full
        self._unpacker = codec.unpacker(max_message, max_array=max_array, max_ext=max_path)
        # offsets now count from the new decoder's start
        self._fed, self._done, self._partial = len(rest), 0, None
        if rest:
            self._unpacker.feed(bytes(rest))
            self._partial = codec.PartialScan(0)
            self._partial.feed(bytes(rest))

    def receive_data(self, data: bytes) -> list:
        """Feed bytes from the client; returns the events they complete. Undecodable
        input queues a protocol error and ends with :class:`ConnectionBroken`."""
        events: list = []
        if self.broken:
            return events
        locked = self._locked
        unpacker = self._unpacker
        fed = self._fed
        self._fed = fed + len(data)
        try:
            if locked is not None:
                locked += data
            unpacker.feed(data)
            for msg in unpacker:
                # where the last complete message ends (tell() also counts the
                # bytes of one in progress, which unlock() must carry over)
                self._done = unpacker.tell()
                if type(msg) is not dict:
                    self.error(None, ProtocolError("a request must be a map"))
                    continue
                action = msg.get("action")
                if action == "credit" and "seq" not in msg:
                    ev = self._grant(msg.get("task"), msg.get("n"))
                    if ev is not None:
                        events.append(ev)
                    continue
                seq = msg.get("seq")
                if type(action) is not str:
                    self.error(seq, ClientError("a request needs an 'action'"))
                    continue
                events.append(Request(seq, action, msg))
            if locked is not None:
                del locked[: len(locked) - (self._fed - self._done)]
            if self._done != self._fed:
                self._check_partial(fed, data)
            elif self._partial is not None:
                self._partial = None
        except _UNPACK_ERRORS as exc:
            self.broken = True
            # what the decoder holds of the unfinished message goes now, not when
            # the connection's task ends
            self._unpacker = codec.unpacker(1)
            self._partial = None
            err = ProtocolError(f"undecodable data from client, closing: {exc}")
            self.error(None, err)
            events.append(ConnectionBroken(err))
        return events
