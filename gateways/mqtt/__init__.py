"""The MQTT gateway: real devices (Tasmota, Shelly, zigbee2mqtt, ...) and Home Assistant
on one side, the DistKV tree on the other. See docs/gateways.md for the configuration.

One process serves many *entities* (:mod:`.entity`: state/desired/online entries,
commands only on a change of ``desired``, never retained) and optionally mirrors a
subtree to a topic tree (:mod:`.bridge`, for plain setups). All decisions are in
those pure modules; this module connects the client, the broker and them.

The gateway publishes its status retained at ``<gateway_topic>/status`` (``online``;
``offline`` as its last will and on a clean stop). The configuration is checked before
anything connects (:func:`check_config`); a client id used by another client is
reported in one line instead of the two kicking each other out forever.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from distkv.auth.base import get_method, parse_auth_spec
from distkv.bus import BusOverflowError
from distkv.bus.mqtt import open_mqtt_bus
from distkv.core.acl import user_path
from distkv.core.path import Path, as_path
from distkv.exceptions import ConfigError, DistKVError, PermissionDenied
from distkv.util import NotGiven

from ..counters import GatewayCounters
from .bridge import Bridge
from .config import DEFAULTS, GatewayConfig, check_config
from .entity import Devices, Problem, Publish, Write
from .writes import WriteQueue

logger = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "Bridge", "Devices", "check_config", "serve"]

# "session taken over" this often within a minute: another client has our client id
MAX_TAKEOVERS = 3
# tree writes in flight at once on the gateway's client connection (one per entry)
WORKERS = 32


async def serve(
    client,
    cfg: Mapping | GatewayConfig,
    *,
    task_status=trio.TASK_STATUS_IGNORED,
    counters: GatewayCounters | None = None,
):
    """Run the gateway until cancelled; started once it is subscribed and has read the
    tree's current state. It counts into ``counters`` (see gateways.counters)."""
    gc = cfg if isinstance(cfg, GatewayConfig) else check_config(cfg)
    if gc.mirror_topic is not None:
        await check_mirror_codec(client, gc.name)
    devices = Devices(
        gc.entities,
        gateway_topic=gc.gateway_topic,
        discovery=gc.discovery if any(s.discovery for s in gc.entities) else None,
    )
    async with open_mqtt_bus(
        gc.uri,
        "",  # raw topics: the devices' own layouts
        "gw",
        client_id=gc.client_id,
        max_pending=gc.max_pending,
        will=b"offline",
        presence_topic=devices.status_topic,
        tls=gc.tls,
        max_takeovers=MAX_TAKEOVERS,
    ) as bus:
        await bus.set_presence(b"online")
        shell = _Shell(client, bus, gc, devices, counters or GatewayCounters())
        async with trio.open_nursery() as nursery:
            shell.writes.start(nursery)
            nursery.start_soon(shell.announce_on_connect)
            if gc.mirror_topic is not None:
                await nursery.start(shell.mirror)
            topics = devices.subscriptions()
            if topics:
                await nursery.start(shell.devices_in, topics)
            for path in devices.watched_paths():
                await nursery.start(shell.watch_desired, path)
            # "started" means subscribed: a device message from now on is heard (the bus
            # counts as connected once every subscription is confirmed)
            await bus.wait_connected()
            task_status.started()


async def check_mirror_codec(client, name: str = "mqtt") -> None:
    """Mirror mode stores what devices send as strings and relies on the login user's
    codec (``auth user modify --aux codec=CONV``) to make them typed; the server applies
    a user's codec only with auth on (with auth off every client is ``root``). A user
    with a codec on a network with auth off would silently store ``"ON"``: refuse, in
    one line (:class:`ConfigError`). Entities apply their own ``codec:`` instead."""
    spec = (client.cfg.get("connect") or {}).get("auth")
    if not spec:
        return  # no login user: nobody asked for a codec
    try:
        if isinstance(spec, Mapping):
            method, params = spec.get("method"), spec
        else:
            method, params = parse_auth_spec(spec)
        user = params.get("name")
        if not isinstance(method, str) or not isinstance(user, str):
            return
        current = (await client.get(Path(None, "auth"))).get("value")
        record = (await client.get(user_path(method, user))).get("value")
    except PermissionDenied:
        return  # not allowed to read them: auth is on, the server applies the codec
    cur = current.get("current") if isinstance(current, dict) else None
    if cur is not None and get_method(cur).needs_login:
        return
    aux = record.get("aux") if isinstance(record, dict) else None
    codec = aux.get("codec") if isinstance(aux, dict) else None
    if codec:
        raise ConfigError(
            f"gateways.{name}: mirror mode: user {user!r} has codec {codec!r}, but auth is off, "
            "so the server applies no codec (values would stay strings): switch auth on "
            "(distkv client auth -m METHOD init), or use entities with a codec: key"
        )


class _Pipeline:
    """Tree writes, several in flight on the one client connection (see
    :mod:`.writes`: one per entry, the newest value of an entry wins).

    ``add`` never waits: when the entry is free and fewer than ``WORKERS`` writes are
    in flight, ``start`` sends the request at once from the caller (a bus handler, in
    the bus reader's task: :meth:`Client.send_nowait`), so no task switch delays a
    device's value on its way into the tree. ``WORKERS`` tasks only wait for the
    replies (``finish``) and send an entry's next value, if one came meanwhile."""

    def __init__(
        self,
        start: Callable[[Any, Any], Any],
        finish: Callable[[Any, Any, Any], Awaitable[None]],
    ) -> None:
        self.queue: WriteQueue[Any] = WriteQueue()
        self._start = start
        self._finish = finish
        self._sent: deque[tuple[Any, Any, Any]] = deque()  # (key, item, pending reply)
        self._idle = trio.lowlevel.ParkingLot()

    def add(self, key: Any, item: Any) -> None:
        if self.queue.add(key, item):
            self._pump()

    def _pump(self) -> None:
        """Send waiting writes while fewer than ``WORKERS`` are in flight."""
        queue = self.queue
        while queue.in_flight < WORKERS:
            job = queue.take()
            if job is None:
                return
            key, item = job
            self._sent.append((key, item, self._start(key, item)))
            self._idle.unpark()

    def start(self, nursery: trio.Nursery) -> None:
        for _ in range(WORKERS):
            nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        queue, sent = self.queue, self._sent
        while True:
            if not sent:
                await self._idle.park()
                continue
            key, item, pending = sent.popleft()
            while True:
                await self._finish(key, item, pending)
                item = queue.done(key)
                if item is None:
                    break
                pending = self._start(key, item)
            self._pump()  # a place became free


class _Shell:
    """The I/O around :class:`Devices` and :class:`Bridge`."""

    def __init__(
        self, client, bus, gc: GatewayConfig, devices: Devices, counters: GatewayCounters
    ) -> None:
        self.counters = counters
        self._sent = 0  # devices.commands_sent already counted
        self.client = client
        self.bus = bus
        self.gc = gc
        self.devices = devices
        self.dropped = 0
        self.writes = _Pipeline(self._write_start, self._write_end)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            self.bus.publish_nowait(topic, payload, qos=self.gc.qos, retain=retain)
            self.counters.add("messages_out")
        except BusOverflowError:
            self.counters.add("dropped")
            self.dropped += 1
            logger.warning("MQTT queue full: %s not sent", topic)

    def run(self, actions: list) -> None:
        """Carry out the decisions' actions, in order; writes are queued (never waits).
        Publications leave at once (``write_now``) instead of waking the bus's writer
        task: a command reaches the device without a task switch."""
        published = False
        for a in actions:
            if isinstance(a, Publish):
                self.publish(a.topic, a.payload, a.retain)
                published = True
            elif isinstance(a, Write):
                self.writes.add(a.path, a)
            elif isinstance(a, Problem):
                self.counters.add("refused")
                logger.warning("%s", a.text)
        if published:
            self.bus.write_now()
        sent = self.devices.commands_sent
        self.counters.add("commands", sent - self._sent)
        self._sent = sent

    def _write_start(self, path: tuple, w: Write):
        """Send the write (synchronously, see :class:`_Pipeline`); None if it cannot be
        encoded."""
        self.devices.begin_write(path)
        try:
            return self.client.set_nowait(path, w.value)
        except DistKVError as exc:
            self.counters.add("write_errors")
            logger.warning("%s: not stored: %s", ".".join(map(str, path)), exc)
            return None

    async def _write_end(self, path: tuple, w: Write, pending) -> None:
        link = tock = None
        if pending is not None:
            try:
                res = await pending.result()
                link, tock = res.chain[0], res.get("tock")
                self.counters.add("writes")
            except DistKVError as exc:
                self.counters.add("write_errors")
                logger.warning("%s: not stored: %s", ".".join(map(str, path)), exc)
        self.run(self.devices.end_write(path, link, tock=tock, command=w.command))

    async def announce_on_connect(self) -> None:
        """Home Assistant discovery after every (re)connect."""
        while True:
            await self.bus.wait_connected()
            self.run(self.devices.announce())
            await self.bus.wait_disconnected()

    async def devices_in(self, topics: list[str], *, task_status=trio.TASK_STATUS_IGNORED):
        """Device messages -> decisions -> tree writes. Exact topics, one subscription
        each (MQTT v5 subscription ids: one copy per message); the decisions are made
        in the bus reader's handler as the messages arrive (no queue, no task of
        their own), their writes go to the pipeline."""
        devices, run, counters = self.devices, self.run, self.counters

        def handler(msgs) -> None:
            for m in msgs:
                run(devices.message(m.topic, m.payload, m.retained))
            counters.add("messages_in", len(msgs))

        counters.follow("devices_online", lambda: sum(devices.online.values()))

        async with _subscribe_all(self.bus, topics, self.gc.qos, handler):
            task_status.started()
            await trio.sleep_forever()

    async def watch_desired(self, path: tuple, *, task_status=trio.TASK_STATUS_IGNORED):
        initial = True
        async with self.client.watch(path, fetch=True, max_depth=0, nchain=1) as watch:
            async for ev in watch:
                if ev.get("state") == "uptodate":
                    if initial:
                        initial = False
                        task_status.started()
                    continue
                if "path" not in ev:
                    continue
                chain = ev.get("chain") or [None]
                self.run(
                    self.devices.desired_event(
                        path, ev.get("value", NotGiven), chain[0], initial=initial,
                        tock=ev.get("tock"),
                    )  # fmt: skip
                )

    async def mirror(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Mirror mode: ``path`` <-> ``topic/#`` (see :mod:`.bridge`)."""
        gc, bus = self.gc, self.bus
        base, prefix = gc.mirror_path, gc.mirror_topic + "/"
        bridge = Bridge()
        dropped = 0
        counters = self.counters

        def publish(items) -> None:
            nonlocal dropped
            for topic, payload in items:
                try:
                    bus.publish_nowait(prefix + topic, payload, qos=gc.qos, retain=gc.retain)
                    counters.add("messages_out")
                except BusOverflowError:
                    counters.add("dropped")
                    # the broker has been away for long: everything is published again
                    if not dropped:
                        logger.warning("MQTT queue full: will republish everything later")
                    dropped += 1
            bus.write_now()  # out now, not when the bus's writer task runs

        async def resync() -> None:
            nonlocal dropped
            while True:
                await bus.wait_disconnected()
                await bus.wait_connected()
                while dropped:  # again if more were dropped meanwhile
                    dropped = 0
                    for topic, payload in bridge.initial():
                        await bus.publish(prefix + topic, payload, qos=gc.qos, retain=gc.retain)

        async def tree_to_mqtt(ready: trio.Event) -> None:
            async with self.client.watch(base, fetch=True, nchain=1) as watch:
                async for ev in watch:
                    if ev.get("state") == "uptodate":
                        ready.set()
                        continue
                    chain = ev.get("chain") or [None]
                    publish(bridge.tree_event(tuple(ev.path), ev.get("value", NotGiven), chain[0]))

        def write_start(rel: tuple, value: Any):
            bridge.begin_write(rel)
            try:
                if value is NotGiven:
                    return self.client.send_nowait("delete_value", path=as_path(base + rel))
                return self.client.set_nowait(base + rel, value)
            except DistKVError as exc:
                counters.add("write_errors")
                logger.warning("MQTT %s: not stored: %s", "/".join(rel), exc)
                return None

        async def write_end(rel: tuple, value: Any, pending) -> None:
            link = None
            if pending is not None:
                try:
                    res = await pending.result()
                    link = (res.get("chain") or [None])[0]
                    counters.add("writes")
                except DistKVError as exc:
                    counters.add("write_errors")
                    logger.warning("MQTT %s: not stored: %s", "/".join(rel), exc)
            publish(bridge.end_write(rel, link))

        writes = _Pipeline(write_start, write_end)
        async with trio.open_nursery() as nursery:
            writes.start(nursery)
            nursery.start_soon(resync)
            ready = trio.Event()
            nursery.start_soon(tree_to_mqtt, ready)
            await ready.wait()
            publish(bridge.initial())
            async with bus.subscribe(prefix + "#", qos=gc.qos) as sub:
                task_status.started()
                async for msg in sub:
                    counters.add("messages_in")
                    if msg.lost:
                        logger.warning("MQTT gateway fell behind: %d messages lost", msg.lost)
                    action = bridge.mqtt_message(
                        msg.topic[len(prefix) :], msg.payload, msg.retained
                    )
                    if action is not None:
                        writes.add(*action)


class _subscribe_all:
    """Enter one subscription per topic (exact topics: no overlap, one copy each)."""

    def __init__(self, bus, topics: list[str], qos: int, handler) -> None:
        self.subs = [bus.subscribe(t, qos=qos, handler=handler) for t in topics]

    async def __aenter__(self) -> list:
        entered = []
        try:
            for s in self.subs:
                entered.append(await s.__aenter__())
        except BaseException:
            for s in reversed(entered):
                await s.__aexit__(None, None, None)
            raise
        return entered

    async def __aexit__(self, *exc: Any) -> None:
        for s in reversed(self.subs):
            await s.__aexit__(*exc)
