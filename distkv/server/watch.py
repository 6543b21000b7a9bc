"""Watch fan-out: which sessions hear about a change.

Watchers are registered by their path prefix; a change at ``p`` looks up the
``len(p) + 1`` prefixes of ``p``. With no watchers at all the cost is one check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.path import Path
from ..core.types import NotGiven
from ..exceptions import ValueTypeError

if TYPE_CHECKING:
    from ..core.tree import Entry
    from .session import Session


class Watcher:
    __slots__ = ("session", "seq", "prefix", "min_depth", "max_depth", "nchain", "active")

    def __init__(
        self, session: Session, seq: int, prefix: tuple, min_depth: int, max_depth: int, nchain: int
    ):
        self.session = session
        self.seq = seq
        self.prefix = prefix
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.nchain = nchain
        self.active = True

    def event(self, rel: tuple, e: Entry, conflict: bool = False) -> dict[str, Any] | None:
        depth = len(rel)
        if depth < self.min_depth or (self.max_depth >= 0 and depth > self.max_depth):
            return None
        return entry_message(self.seq, rel, e, self.nchain, conflict)


def entry_message(seq: int, rel: tuple, e: Entry, nchain: int, conflict: bool = False) -> dict:
    """The one form of an entry in a client stream (``get_tree``, a watch's dump and
    its live events): relative path, tock, value unless deleted, chain on request."""
    msg: dict[str, Any] = {"seq": seq, "path": Path._from_tuple(rel), "tock": e.tock}
    if e.value is not NotGiven:
        msg["value"] = e.value
    if nchain:
        msg["chain"] = e.chain_list(nchain)
    if conflict:
        msg["conflict"] = True
    return msg


def encode_item(conv: Any, path: tuple, msg: dict) -> None:
    """Apply a session's codec converter to a stream item's value (callers check that
    there is one: most sessions have none). A value the codec cannot encode is sent as
    stored, with ``codec_error`` saying why: one odd value must not end a watch."""
    if "value" in msg:
        try:
            msg["value"] = conv.encode(path, msg["value"])
        except ValueTypeError as exc:
            msg["codec_error"] = str(exc)


class WatchRegistry:
    __slots__ = ("by_prefix", "_lengths", "_depths")

    def __init__(self):
        self.by_prefix: dict[tuple, list[Watcher]] = {}
        # how many watched prefixes have each length: a change looks up only the
        # prefixes of its path that can have watchers (every replicated write passes)
        self._lengths: dict[int, int] = {}
        self._depths: tuple[int, ...] = ()  # those lengths, ascending

    def add(self, w: Watcher) -> None:
        key = tuple(w.prefix)
        lst = self.by_prefix.get(key)
        if lst is None:
            lst = self.by_prefix[key] = []
            self._lengths[len(key)] = self._lengths.get(len(key), 0) + 1
            self._depths = tuple(sorted(self._lengths))
        lst.append(w)

    def remove(self, w: Watcher) -> None:
        w.active = False
        key = tuple(w.prefix)
        lst = self.by_prefix.get(key)
        if lst is None:
            return
        try:
            lst.remove(w)
        except ValueError:
            return
        if not lst:
            del self.by_prefix[key]
            n = self._lengths[len(key)] - 1
            if n:
                self._lengths[len(key)] = n
            else:
                del self._lengths[len(key)]
                self._depths = tuple(sorted(self._lengths))

    def notify(self, path: tuple, e: Entry, conflict: bool = False) -> None:
        """Queue an event for every watcher whose prefix contains ``path``."""
        by_prefix = self.by_prefix
        if not by_prefix:
            return
        path = tuple(path)
        n = len(path)
        for i in self._depths:
            if i > n:
                break
            ws = by_prefix.get(path[:i])
            if ws:
                rel = path[i:]
                for w in ws:
                    acl = w.session.acl
                    if acl is not None and not acl.allowed(path, "r"):
                        continue
                    msg = w.event(rel, e, conflict)
                    if msg is not None:
                        conv = w.session.conv
                        if conv is not None:
                            encode_item(conv, path, msg)
                        w.session.send_stream(w, msg)
