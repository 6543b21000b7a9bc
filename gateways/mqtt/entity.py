"""Device entities: what the gateway writes and publishes for each message and each
change (pure, no I/O; the shell in :mod:`gateways.mqtt` does the talking).

An entity is one value of one device, e.g. the relay of a Tasmota plug. In the tree it
is three entries below its path::

    PATH.state    what the device last reported (written only from its state topic)
    PATH.desired  what a user or runner wants (written by them; the gateway sends it)
    PATH.online   the device's availability (if it has an availability topic)

The rules, which make the gateway safe with real loads (a heater, a pump):

* **The device is the truth about its state.** ``state`` only follows the state topic;
  nothing the tree holds is ever sent to the device as state.
* **A command goes out only when somebody changes ``desired``**, once per change, never
  retained. The initial values read when the gateway (re)starts are not changes, so a
  restart or a configuration reload never re-sends anything; a change made while the
  gateway was down is not sent later either (``desired`` != ``state`` shows it). A change
  is recognised by the head link ``(node, tick)`` of the entry's chain, so a watch event
  delivered twice is still one change.
* **The gateway's own writes are recognised exactly** by the ``(node, tick)`` its
  ``set`` returned (``tock`` is not unique across nodes). The only ``desired`` value the
  gateway writes is one a Home Assistant user asked for on the entity's HA command
  topic; the gateway then sends that command itself, once the tree accepted it.
* **Retained messages on a command topic are ignored**: a retained command is a stale
  request replayed by the broker, not a user asking now.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from distkv.util import NotGiven

from .codec import Codec, CodecError
from .discovery import discovery_config

__all__ = ["Devices", "EntitySpec", "Problem", "Publish", "Write", "extract"]

Link = tuple[str, int]

STATE, DESIRED, ONLINE = "state", "desired", "online"


@dataclass(frozen=True)
class EntitySpec:
    """One entity, resolved from the configuration (templates filled in)."""

    name: str
    path: tuple
    codec: Codec
    state: str | None = None  # device -> tree
    field: str | None = None  # dotted JSON field of the state payload
    command: str | None = None  # tree -> device
    command_field: str | None = None  # send {"field": value} JSON instead of a bare value
    availability: str | None = None
    component: str | None = None  # Home Assistant: switch, sensor, binary_sensor
    unit: str | None = None
    discovery: bool = False

    @property
    def state_path(self) -> tuple:
        return (*self.path, STATE)

    @property
    def desired_path(self) -> tuple:
        return (*self.path, DESIRED)

    @property
    def online_path(self) -> tuple:
        return (*self.path, ONLINE)


class Publish(NamedTuple):
    topic: str
    payload: bytes
    retain: bool = False


class Write(NamedTuple):
    """Write ``value`` at ``path`` as the gateway (``begin_write``/``end_write`` around it).

    ``command``: the Home Assistant command that asked for it, sent once the tree accepted
    the write (``end_write``). It travels with the write, so a write the shell replaces
    by a newer one of the same entry (coalescing) takes its command along."""

    path: tuple
    value: Any
    command: Publish | None = None


class Problem(NamedTuple):
    """Something the user should hear about (logged as a warning)."""

    text: str


_MISSING = object()


def extract(doc: Any, field: str) -> Any:
    """The value at dotted ``field`` of a decoded JSON document (``AM2301.Temperature``),
    or ``_MISSING``."""
    for part in field.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return _MISSING
    return doc


def availability_flag(payload: bytes) -> bool | None:
    """Tasmota ``Online``/``Offline``, zigbee2mqtt ``online`` or ``{"state": "online"}``,
    Shelly ``true``/``false``; None if it is none of these."""
    text = payload.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("state", ""))
        except (ValueError, AttributeError):
            return None
    t = text.lower()
    if t in ("online", "true", "1"):
        return True
    if t in ("offline", "false", "0"):
        return False
    return None


class Devices:
    """The decisions for all entities of one gateway.

    ``gateway_topic`` is the gateway's own topic prefix (its status and the Home
    Assistant state/command topics live below it); ``discovery`` the Home Assistant
    discovery prefix, or None for no discovery.
    """

    def __init__(
        self,
        specs: list[EntitySpec],
        *,
        gateway_topic: str,
        discovery: str | None = None,
        echo_memory: int = 10_000,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.gateway_topic = gateway_topic
        self.discovery = discovery
        self._by_state: dict[str, list[EntitySpec]] = {}
        self._by_avail: dict[str, list[EntitySpec]] = {}
        self._by_ha_cmd: dict[str, EntitySpec] = {}
        self._by_desired: dict[tuple, EntitySpec] = {}
        for s in specs:
            if s.state:
                self._by_state.setdefault(s.state, []).append(s)
            if s.availability:
                self._by_avail.setdefault(s.availability, []).append(s)
            if s.command:
                self._by_desired[s.desired_path] = s
                if s.discovery and discovery:
                    self._by_ha_cmd[self.ha_topic(s, "set")] = s
        self.state: dict[str, Any] = {}  # name -> state value last written this run
        self.online: dict[str, bool] = {}
        self._desired_head: dict[str, Link | None] = {}  # name -> head link seen last
        self._ours: deque[Link] = deque(maxlen=echo_memory)
        self._ours_set: set[Link] = set()
        self._writing: dict[tuple, list[tuple[Any, Link | None, bool, int | None]]] = {}
        self._written_tock: dict[tuple, int] = {}  # desired path -> tock of our last write
        self.commands_sent = 0

    # ------------------------------------------------------------- topics

    def ha_topic(self, spec: EntitySpec, what: str) -> str:
        return f"{self.gateway_topic}/{spec.name}/{what}"

    @property
    def status_topic(self) -> str:
        return f"{self.gateway_topic}/status"

    def subscriptions(self) -> list[str]:
        """Every topic the gateway must hear (no wildcards unless configured)."""
        topics = list(self._by_state) + list(self._by_avail) + list(self._by_ha_cmd)
        if self.discovery and any(s.discovery for s in self.specs.values()):
            topics.append(f"{self.discovery}/status")
        return list(dict.fromkeys(topics))

    def watched_paths(self) -> list[tuple]:
        """``desired`` entries to watch (entities with a command topic)."""
        return list(self._by_desired)

    # ------------------------------------------------------------- MQTT -> tree

    def message(self, topic: str, payload: bytes, retained: bool) -> list:
        """One MQTT message -> actions (:class:`Write`, :class:`Publish`, :class:`Problem`)."""
        out: list = []
        specs = self._by_state.get(topic)
        if specs:
            self._state_message(specs, topic, payload, out)
        specs = self._by_avail.get(topic)
        if specs:
            flag = availability_flag(payload)
            if flag is None:
                out.append(Problem(f"{topic}: availability {payload[:40]!r} not understood"))
            else:
                for s in specs:
                    if self.online.get(s.name) is not flag:
                        self.online[s.name] = flag
                        out.append(Write(s.online_path, flag))
                    if s.discovery and self.discovery:
                        out.append(Publish(self.ha_topic(s, "availability"), _avail(flag), True))
        spec = self._by_ha_cmd.get(topic)
        if spec is not None and not retained:  # a retained command is stale: ignore it
            try:
                value = spec.codec.decode(payload)
                cmd = self._command(spec, value)
            except CodecError as exc:
                out.append(Problem(f"{topic}: {exc}"))
            else:
                out.append(Write(spec.desired_path, value, cmd))
        if self.discovery and topic == f"{self.discovery}/status" and payload == b"online":
            out.extend(self.announce())
        return out

    def _state_message(self, specs: list[EntitySpec], topic: str, payload: bytes, out: list):
        doc: Any = _MISSING
        for s in specs:
            if s.field:
                if doc is _MISSING:
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        out.append(Problem(f"{topic}: not JSON: {payload[:40]!r}"))
                        return
                raw = extract(doc, s.field)
                if raw is _MISSING:
                    continue  # e.g. a zigbee2mqtt update that does not mention this field
            else:
                raw = payload
            try:
                value = s.codec.decode(raw)
            except CodecError as exc:
                out.append(Problem(f"{topic}: {s.name}: {exc}"))
                continue
            if s.name in self.state and _same(self.state[s.name], value):
                continue
            self.state[s.name] = value
            out.append(Write(s.state_path, value))
            if s.discovery and self.discovery:
                out.append(Publish(self.ha_topic(s, "state"), _ha_state(s, value), True))

    # ------------------------------------------------------------- tree -> MQTT

    def begin_write(self, path: tuple) -> None:
        """The shell is about to write ``path``: hold its watch events until done."""
        self._writing.setdefault(path, [])

    def end_write(
        self,
        path: tuple,
        link: Link | None,
        *,
        tock: int | None = None,
        command: Publish | None = None,
    ) -> list:
        """The write returned ``link`` and ``tock`` (None: refused); returns the actions
        still due: ``command`` (the write's HA command) if the tree accepted it, and any
        watch events held meanwhile.

        ``tock`` orders what the watch delivers later: a change that reaches the tree
        after our write and replaces it has a larger tock (a merge keeps the later
        tock), so an event with a smaller one was applied before our write and is
        superseded by it, however late the watch hands it over."""
        out: list = []
        cmd = command
        if link is not None:
            link = (link[0], link[1])
            self._remember(link)
            if tock is not None:
                self._written_tock[path] = tock
            spec = self._by_desired.get(path)
            if spec is not None:
                self._desired_head[spec.name] = link
            if cmd is not None:
                self.commands_sent += 1
                out.append(cmd)
        for value, ev_link, initial, ev_tock in self._writing.pop(path, ()):
            out.extend(self.desired_event(path, value, ev_link, initial=initial, tock=ev_tock))
        return out

    def desired_event(
        self,
        path: tuple,
        value: Any,
        link: Link | None,
        *,
        initial: bool = False,
        tock: int | None = None,
    ) -> list:
        """A watch event on a ``desired`` entry (``value`` NotGiven: deleted; ``initial``:
        read at start, before the watch was up to date; ``tock``: the event's) -> the
        command to publish."""
        spec = self._by_desired.get(path)
        if spec is None:
            return []
        held = self._writing.get(path)
        if held is not None:
            held.append((value, link, initial, tock))
            return []
        ours = self._written_tock.get(path)
        if ours is not None and tock is not None and tock < ours:
            return []  # applied before our own write, which superseded it (end_write)
        if link is not None:
            link = (link[0], link[1])
            if link in self._ours_set:
                self._ours_set.discard(link)
                return []  # our own write (a Home Assistant command, already sent)
            if self._desired_head.get(spec.name, ()) == link:
                return []  # the same change again (a watch restarted after a reconnect)
        self._desired_head[spec.name] = link
        if initial or value is NotGiven:
            return []  # a value from before we started, or a deletion: not a request
        try:
            cmd = self._command(spec, value)
        except CodecError as exc:
            return [Problem(f"{'.'.join(map(str, path))}: cannot send {value!r}: {exc}")]
        self.commands_sent += 1
        return [cmd]

    def _command(self, spec: EntitySpec, value: Any) -> Publish:
        assert spec.command is not None
        if spec.command_field:
            payload = json.dumps({spec.command_field: spec.codec.encode(value)}).encode()
        else:
            payload = spec.codec.to_payload(value)
        return Publish(spec.command, payload, False)  # never retained

    def _remember(self, link: Link) -> None:
        if len(self._ours) == self._ours.maxlen:
            self._ours_set.discard(self._ours[0])
        self._ours.append(link)
        self._ours_set.add(link)

    # ------------------------------------------------------------- Home Assistant

    def announce(self) -> list[Publish]:
        """Discovery configs of the selected entities (retained): at start, after every
        reconnect and whenever Home Assistant says it is ``online``."""
        if not self.discovery:
            return []
        out = []
        for s in self.specs.values():
            if s.discovery:
                topic, cfg = discovery_config(self, s)
                out.append(Publish(topic, json.dumps(cfg).encode(), True))
        return out


def _avail(flag: bool) -> bytes:
    return b"online" if flag else b"offline"


def _ha_state(spec: EntitySpec, value: Any) -> bytes:
    if spec.codec.kind == "bool":
        return b"ON" if value else b"OFF"
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
