"""What the MQTT gateway does with each message and each change (pure, no I/O).

Mapping: topic ``<prefix>/kitchen/lamp`` <-> path ``<path>.kitchen.lamp`` (each topic
level is one path element, a string; path elements print with ``str()``). Payloads are
text: what a device sends is stored as a UTF-8 string (bytes if it is not UTF-8), and the
gateway user's codec (``auth user modify --aux codec=...``) turns ``"ON"`` into
``True`` on the server. Going out, strings are sent as they are, bytes raw, anything
else as JSON; a deleted entry clears the retained topic (empty payload), and an empty
payload from MQTT deletes the entry.

Mirror mode: for plain setups (software that speaks MQTT), not for devices with real
loads; use entities (:mod:`.entity`) for those.

No loops: a change the gateway itself wrote (from MQTT) is not published back. It is
recognised by the exact ``(node, tick)`` its write returned (the head link of the
entry's chain; ``tock`` is not unique across nodes); a watch event that arrives before that
write has returned is held until it has. A message the broker echoes back to us (we
subscribe to what we publish) is recognised by topic and payload.

Startup: the tree wins. Retained messages the broker replays when we subscribe are
taken only for paths the tree has no value for; then the tree's state is published
(retained), so devices that subscribe later see it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from distkv.util import NotGiven

__all__ = ["Bridge", "payload_to_value", "rel_to_topic", "topic_to_rel", "value_to_payload"]

_BAD_LEVEL = ("+", "#", "")
Link = tuple[str, int]


def topic_to_rel(topic: str) -> tuple:
    return tuple(topic.split("/"))


def rel_to_topic(rel: tuple) -> str | None:
    """The topic of a relative path, or None if it has none (``/``, ``+``, ``#``, empty)."""
    if not rel:
        return None
    levels = [str(e) for e in rel]
    if any(lv in _BAD_LEVEL or "/" in lv or "\0" in lv for lv in levels):
        return None
    return "/".join(levels)


def payload_to_value(payload: bytes) -> Any:
    """MQTT payload -> value to store (NotGiven: delete)."""
    if not payload:
        return NotGiven
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(payload)


def value_to_payload(value: Any) -> bytes:
    if value is NotGiven:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return json.dumps(value, default=str).encode("utf-8")


class Bridge:
    """The gateway's decisions; the shell feeds it messages and events."""

    def __init__(self, echo_memory: int = 10_000):
        self._ours: deque[Link] = deque(maxlen=echo_memory)  # links of our own writes
        self._ours_set: set[Link] = set()
        self._writing: dict[tuple, list[tuple[Any, Link | None]]] = {}  # rel -> held events
        self._published: dict[str, bytes] = {}  # topic -> payload we published last
        self.tree: dict[tuple, Any] = {}  # rel -> the value we last saw in the tree
        self.started = False  # the initial tree state has been read

    # --- MQTT -> tree

    def mqtt_message(self, topic: str, payload: bytes, retained: bool) -> tuple | None:
        """``(rel, value)`` to write (``NotGiven``: delete), or None to ignore."""
        if self._published.get(topic) == payload:
            del self._published[topic]
            return None  # our own publication, echoed by the broker
        rel = topic_to_rel(topic)
        value = payload_to_value(payload)
        if retained and self.tree.get(rel, NotGiven) is not NotGiven:
            return None  # the tree wins over a stale retained state (see module doc)
        if value is NotGiven and self.tree.get(rel, NotGiven) is NotGiven:
            return None  # nothing to delete
        return rel, value

    def begin_write(self, rel: tuple) -> None:
        """The shell is about to write ``rel``; hold its watch events until done."""
        self._writing.setdefault(rel, [])

    def end_write(self, rel: tuple, link: Link | None) -> list[tuple[str, bytes]]:
        """The write returned ``link`` (``(node, tick)``; None: it failed); returns
        what the held events of ``rel`` still need published."""
        if link is not None:
            self._remember((link[0], link[1]))
        out = []
        for value, ev_link in self._writing.pop(rel, ()):
            out.extend(self.tree_event(rel, value, ev_link))
        return out

    def _remember(self, link: Link) -> None:
        if len(self._ours) == self._ours.maxlen:
            self._ours_set.discard(self._ours[0])
        self._ours.append(link)
        self._ours_set.add(link)

    # --- tree -> MQTT

    def tree_event(self, rel: tuple, value: Any, link: Link | None) -> list[tuple[str, bytes]]:
        """A watch event (``value`` NotGiven: deleted; ``link`` the head of its chain)
        -> ``[(topic, payload)]`` to publish."""
        held = self._writing.get(rel)
        if held is not None:
            held.append((value, link))
            return []
        self.tree[rel] = value
        if value is NotGiven:
            del self.tree[rel]
        if link is not None and (link := (link[0], link[1])) in self._ours_set:
            self._ours_set.discard(link)
            return []  # we wrote it, from MQTT
        if not self.started:
            return []  # the initial state is published in one go by initial()
        return self._publish(rel, value)

    def initial(self) -> list[tuple[str, bytes]]:
        """After the initial tree state has been read: publish all of it."""
        self.started = True
        out: list[tuple[str, bytes]] = []
        for rel, value in self.tree.items():
            out.extend(self._publish(rel, value))
        return out

    def _publish(self, rel: tuple, value: Any) -> list[tuple[str, bytes]]:
        topic = rel_to_topic(rel)
        if topic is None:
            return []
        payload = value_to_payload(value)
        self._published[topic] = payload
        return [(topic, payload)]
