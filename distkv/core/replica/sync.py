"""Receiving a full sync: what a replica keeps while a peer's dump streams in."""

from __future__ import annotations

from .messages import Message, SyncHeader

__all__ = ["SyncIntake"]


class SyncIntake:
    """Bus messages buffered during the dump, the dump's header, and (for a node
    that had data) the paths the dump contained: afterwards, own entries the peer
    has seen but did not send were deleted and purged there."""

    def __init__(self) -> None:
        self.buffer: list[Message] = []
        self.header: SyncHeader | None = None
        self.paths: set | None = None

    def begin(self, *, had_data: bool) -> None:
        self.buffer = []
        self.header = None
        self.paths = set() if had_data else None

    def got_path(self, path: tuple) -> None:
        if self.paths is not None:
            self.paths.add(tuple(path))

    def end(self) -> None:
        """The dump is over (done or failed); the buffer is taken by :meth:`take`."""
        self.paths = None
        self.header = None

    def take(self) -> list[Message]:
        buf, self.buffer = self.buffer, []
        return buf
