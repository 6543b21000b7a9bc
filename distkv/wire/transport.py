"""The one stream wrapper both protocol shells use for their latency work.

Two tricks make a loopback round trip cheap on small machines, and both need the
plain socket under a trio stream:

* **kernel-first sends**: a reply or request that the kernel takes at once (the usual
  case: it fits the socket buffer) is written with one ``send`` on a stdlib socket
  (a duplicate of the stream's fd), skipping trio's send machinery and its cancel
  scope; only a partial write falls back to ``send_all``;
* **busy polling** (:mod:`distkv.busypoll`): a reader that was just answered quickly
  polls for a short while before it sleeps in the event loop.

TLS and in-memory streams have no plain socket: then this is a thin pass-through.
"""

from __future__ import annotations

import os
import socket

import trio

from ..busypoll import BusyPoller


class Transport:
    """A trio stream with kernel-first sends and optional busy polling."""

    __slots__ = ("stream", "raw", "poller")

    def __init__(self, stream: trio.abc.Stream, busy_poll_us: float = 0):
        self.stream = stream
        self.raw: socket.socket | None = None
        self.poller: BusyPoller | None = None
        if isinstance(stream, trio.SocketStream):
            try:
                self.raw = socket.socket(fileno=os.dup(stream.socket.fileno()))
            except OSError:
                self.raw = None
        if self.raw is not None and busy_poll_us:
            self.poller = BusyPoller(self.raw, stream, busy_poll_us)

    async def receive_some(self, max_bytes: int = 65536, poll: bool = True) -> bytes:
        """``poll=False``: sleep at once this time (more work may pile up meanwhile).
        The hot paths call ``poller.receive_some`` or ``stream.receive_some`` directly:
        every frame in the await chain costs on each resume of a busy poll."""
        if self.poller is not None:
            return await self.poller.receive_some(max_bytes, poll)
        return await self.stream.receive_some(max_bytes)

    def send_now(self, data: bytes) -> int:
        """Offer ``data`` to the kernel without waiting; returns the bytes it took
        (0 without a plain socket). Raises ``BrokenResourceError`` on a dead socket."""
        raw = self.raw
        if raw is None:
            return 0
        try:
            return raw.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None
        with trio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
