"""1-wire sensors into the tree: poll one or more ``owserver``s, write what changed.

``distkv-gateway owfs`` runs :func:`serve`. Every ``interval`` seconds it lists the
devices of each owserver and reads, from each device whose family code (``28`` in
``28.000028D70100``) is a key of ``attributes`` (or that has its own ``devices``
entry), those attributes whose own interval is due. When at least ``simultaneous``
temperature sensors are due on one owserver, it starts one conversion for all of them
(``/simultaneous/temperature``), waits ``conversion`` seconds and reads
``latesttemp``: one conversion per bus instead of 750 ms per sensor.

A reading lands at ``<path>.<name>.<attribute>``, where the name is the device's
owserver alias if it has one, else its id (one path element, so the CLI spells it
``onewire.28:.000028D70100.temperature``). Per device the gateway also keeps
``present`` (listed or not), ``stale`` (attributes without a fresh reading for
``stale_after`` intervals; also recorded in the error tree under
``.distkv error owfs``), ``gone`` (unlisted for ``gone_after`` seconds; with
``remove_gone`` the device's entries are deleted instead), ``dropped`` (implausible
readings counted) and ``mismatch`` (output attributes that do not follow their tree
entry). ``outputs`` make an attribute such as ``PIO.A`` follow a tree entry: the
desired value is written to the device, the value read back lands at its usual place.

Every rule (plausibility, deadband, rounding, staleness, gone-ness, output
reconciliation) is in :class:`~gateways.owfs.sensors.SensorTracker`, which does no I/O;
this module only lists, reads, sleeps and carries out its answers. Settings are checked
against :data:`gateways.owfs.config.SCHEMA` before anything connects.

Failures never stop the loop: a device whose read fails is logged once (and again when
it recovers), an owserver that is down is logged once and retried every interval.
Errors talking to DistKV end the gateway; its service manager restarts it, which is
cheap, since only what differs from the tree is written.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from distkv.client.runner import error_id
from distkv.core.runner import ERROR_ROOT
from distkv.util import Path
from hw.onewire import OneWire, OneWireError, OwserverBus

from ..counters import GatewayCounters
from .config import DEFAULTS, SCHEMA, check_config
from .sensors import PRESENT, Changes, Rule, SensorTracker, typed_value

__all__ = [
    "DEFAULTS",
    "PRESENT",
    "SCHEMA",
    "Changes",
    "Rule",
    "SensorTracker",
    "check_config",
    "serve",
    "typed_value",
]

logger = logging.getLogger(__name__)

#: Where the gateway's error records go: ``.distkv error owfs <id>``.
ERROR_NAME = "owfs"


async def _known(client, root: Path) -> list[tuple[tuple[str, str], Any]]:
    """What the tree holds below ``root`` at depth two: (name, entry) -> value."""
    out = []
    async for entry in client.get_tree(root, min_depth=2, max_depth=2):
        name, what = entry.path
        if isinstance(name, str) and isinstance(what, str) and "value" in entry:
            out.append(((name, what), entry.value))
    return out


class _Shell:
    """Carries out a tracker's decisions: tree writes, device writes, error records."""

    def __init__(
        self,
        client,
        buses: Sequence[OneWire],
        root: Path,
        tracker: SensorTracker,
        counters: GatewayCounters,
    ):
        self.counters = counters
        self.client = client
        self.buses = buses
        self.root = root
        self.tracker = tracker

    async def apply(self, ch: Changes) -> None:
        c = self.counters
        c.add("refused", ch.refused)
        c.set("devices_online", self.tracker.present())
        for line in ch.notes:
            logger.warning("%s", line)
        for line in ch.info:
            logger.info("%s", line)
        for key, value in ch.writes:
            await self.client.set(self.root + key, value)
            c.add("writes")
        for key in ch.deletes:
            await self.client.delete(self.root + key)
            c.add("writes")
        for name, message in ch.errors:
            path = self.root + (name,)
            epath = Path(*ERROR_ROOT, ERROR_NAME, error_id(path))
            if message is None:
                await self.client.delete(epath)
            else:
                rec = {"path": path, "message": message, "time": time.time(), "count": 1}
                await self.client.set(epath, rec)
            c.add("writes")
        for device, attr, text in ch.outputs:
            d = self.tracker.devices.get(device)
            bus = self.buses[d.server if d is not None and d.server is not None else 0]
            try:
                await bus.write(device, attr, text)
                c.add("commands")
                c.add("messages_out")
            except OneWireError as exc:
                c.add("errors")
                logger.warning("1-wire output %s/%s: %s", device, attr, exc)

    def lost(self, server: int, exc: OneWireError) -> None:
        self.counters.add("errors")
        if self.tracker.lost(server, str(exc)):
            logger.warning("%s; retrying every poll, quietly until it answers", exc)

    async def poll_bus(self, server: int, bus: OneWire, conversion: float, out: dict) -> None:
        """List and read one owserver; what it answered goes into ``out``."""
        tr = self.tracker
        try:
            listing = await bus.listing()
            now = trio.current_time()
            due, simultaneous = tr.plan(listing, now)
            if simultaneous:
                await bus.convert()
                await trio.sleep(conversion)
            for device, attrs in due.items():
                for attr in attrs:
                    src = "latesttemp" if simultaneous and attr == "temperature" else attr
                    try:
                        out["readings"][device, attr] = await bus.read(device, src)
                    except OneWireError as exc:
                        if exc.unreachable:
                            raise
                        out["errors"][device] = str(exc)
                        break  # the device is in trouble: its other attributes next time
        except OneWireError as exc:
            if not exc.unreachable:  # e.g. the conversion itself failed: retry next poll
                self.counters.add("errors")
                logger.warning("%s: %s", bus, exc)
            else:
                self.lost(server, exc)
            return
        out["listings"][server] = listing

    async def poll(self, conversion: float) -> None:
        """One poll of every owserver (concurrently), then the tracker's answer."""
        out: dict[str, dict] = {"listings": {}, "readings": {}, "errors": {}}
        async with trio.open_nursery() as nursery:
            for i, bus in enumerate(self.buses):
                nursery.start_soon(self.poll_bus, i, bus, conversion, out)
        now = trio.current_time()
        self.counters.add("messages_in", len(out["readings"]))
        self.counters.add("errors", len(out["errors"]))
        if out["listings"]:
            ch = self.tracker.update(now, out["listings"], out["readings"], out["errors"])
        else:
            ch = self.tracker.check(now)
        await self.apply(ch)

    async def follow_output(self, key: str, attr: str, path: Path, *, task_status) -> None:
        """Hand every change of an output's tree entry to the tracker."""
        async with self.client.watch(path, fetch=True, max_depth=0) as w:
            async for m in w:
                if m.get("state") == "uptodate":
                    task_status.started()
                    continue
                if "path" in m:
                    await self.apply(self.tracker.want(key, attr, m.get("value")))


async def serve(
    client,
    cfg: Mapping,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    bus: OneWire | None = None,
    buses: Sequence[OneWire] | None = None,
    counters: GatewayCounters | None = None,
) -> None:
    """Poll the owservers every ``cfg["interval"]`` seconds until cancelled.

    ``bus`` / ``buses`` replace the owservers of ``host``/``port`` or ``servers``
    (tests pass :class:`~hw.onewire.SimulatedBus` objects). ``task_status.started()``
    is called once the first poll is done, whether or not the owservers answered. A
    ConfigError comes out before that; errors from DistKV end the gateway. It counts
    into ``counters`` (readings in, writes, outputs, implausible readings, errors,
    devices present; see gateways.counters).
    """
    cfg = check_config(cfg)
    root: Path = cfg["path"]
    interval = float(cfg["interval"])
    given = list(buses) if buses is not None else [bus] if bus is not None else None
    own = given is None
    the_buses: list[OneWire] = given or [OwserverBus(h, p) for h, p in cfg["servers"]]
    cfg["servers"] = [str(b) for b in the_buses]
    try:
        tracker = SensorTracker(cfg, await _known(client, root), trio.current_time())
        shell = _Shell(client, the_buses, root, tracker, counters or GatewayCounters())
        async with trio.open_nursery() as nursery:
            for key, attr, path in cfg["outputs"]:
                await nursery.start(functools.partial(shell.follow_output, key, attr, path))
            started = False
            while True:
                t0 = trio.current_time()
                await shell.poll(cfg["conversion"])
                for b in the_buses:
                    await b.idle()
                if not started:
                    task_status.started()
                    started = True
                # a fixed rhythm; a poll that overruns is followed by the next at once
                await trio.sleep_until(t0 + interval)
    finally:
        if own:
            for b in the_buses:
                await b.aclose()
