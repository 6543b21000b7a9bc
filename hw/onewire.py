"""Access to 1-wire devices: an interface, a real bus through ``owserver``, a simulated one.

Gateways talk to :class:`OneWire` only, so the polling logic can be tested in-process
(with :class:`SimulatedBus`, no sockets, trio's virtual clock) and run for real against
an ``owserver`` (:class:`OwserverBus`) without change.

Device ids are owfs' default ``f.i`` form, e.g. ``"28.000028D70100"``: the family code
(two hex digits) before the dot, which is what gateways use to decide what to read.
Attributes are owfs file names inside a device directory (``temperature``,
``counters.A``, ``PIO.0``). Values travel as text, exactly as owfs presents them
(stripped of the padding owserver adds); turning them into numbers is the caller's
business, because only the caller knows what an attribute means.

Every failure is a :class:`OneWireError`. Its :attr:`~OneWireError.unreachable` flag
tells a broken connection to the owserver (nothing can be read; retry later) from an
error about one device or attribute (the others are fine).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import trio
from pyownet import protocol as _ow

from distkv.exceptions import DistKVError

__all__ = ["OneWire", "OneWireError", "OwserverBus", "SimulatedBus", "DEVICE_ID"]

#: A device id as owserver lists it by default (``f.i``; ``f.i.c`` adds the CRC byte).
DEVICE_ID = re.compile(r"[0-9A-F]{2}\.[0-9A-F]{12}(?:\.[0-9A-F]{2})?", re.IGNORECASE)


class OneWireError(DistKVError):
    """A 1-wire operation failed.

    ``unreachable=True`` (in :attr:`info`) means the owserver itself could not be
    reached or spoke garbage; otherwise the server answered, but with an error for this
    device or attribute (it vanished, the attribute does not exist, a CRC error...).
    """

    code = "onewire"

    @property
    def unreachable(self) -> bool:
        return bool(self.info.get("unreachable"))


def _check_device(device: str) -> None:
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise ValueError(f"not a 1-wire device id: {device!r}")


def _check_attribute(attribute: str) -> None:
    # owfs paths may have subdirectories ("B1-R1-A/pressure"), but never climb out of
    # the device directory: an attribute comes from configuration, not from the bus.
    if (
        not isinstance(attribute, str)
        or not attribute
        or attribute.startswith("/")
        or ".." in attribute.split("/")
    ):
        raise ValueError(f"not a 1-wire attribute: {attribute!r}")


class OneWire:
    """What a gateway needs from a 1-wire bus. Subclasses implement :meth:`devices`,
    :meth:`read` and :meth:`write`; :meth:`idle` and :meth:`aclose` may stay no-ops.

    Implementations must be safe to call from several trio tasks at once (they may
    serialise internally) and must raise nothing but :class:`OneWireError` for bus
    problems; ``ValueError`` is reserved for malformed ids and attribute names, which
    are programming or configuration errors.
    """

    async def devices(self) -> list[str]:
        """The ids of the devices on the bus now, sorted (no bus or system entries)."""
        raise NotImplementedError

    async def read(self, device: str, attribute: str) -> str:
        """The raw text of one attribute, stripped of surrounding whitespace."""
        raise NotImplementedError

    async def listing(self) -> dict[str, str | None]:
        """The devices on the bus now: id -> owserver alias (None: it has none)."""
        return dict.fromkeys(await self.devices())

    async def convert(self) -> None:
        """Start one simultaneous temperature conversion on every bus; afterwards
        ``latesttemp`` reads the result without a conversion per sensor."""
        raise NotImplementedError

    async def write(self, device: str, attribute: str, value: str) -> None:
        """Write raw text to one attribute (e.g. ``PIO.A``)."""
        raise NotImplementedError

    async def idle(self) -> None:
        """No calls will follow for a while (between polls): drop what should not be
        held open meanwhile. The next call reconnects as needed."""

    async def aclose(self) -> None:
        """Release connections; the bus object must not be used afterwards."""


class OwserverBus(OneWire):
    """A bus behind an ``owserver`` (owfs), reached with pyownet.

    pyownet is a blocking socket client, so every call runs in a worker thread. One
    persistent connection (``persistent=True``: one TCP handshake per poll rather than
    per read) is shared; a persistent pyownet proxy is not thread-safe, so a capacity
    limiter of one serialises the calls. The proxy is created lazily, in the worker
    thread too (it resolves the host name and pings the server), so constructing the
    bus never blocks and never fails: an owserver that is down shows up as an
    unreachable :class:`OneWireError` on the first call, and the next call tries again
    on a new connection.

    :meth:`idle` closes the connection between polls (the proxy object stays; its
    next call connects again). That matters: owserver 3.2 takes SIGTERM as "finish
    gracefully" and waits for open connections to close (measured: with an idle
    persistent connection it was still answering 40 s later, and exited the moment the
    connection closed), so a gateway that kept one forever would make every
    ``systemctl stop owserver`` wait for the SIGKILL timeout.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 4304) -> None:
        self.host = host
        self.port = int(port)
        self._proxy: Any = None
        self._limiter = trio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"OwserverBus({self.host!r}, {self.port})"

    def __str__(self) -> str:
        return f"owserver {self.host}:{self.port}"

    async def devices(self) -> list[str]:
        entries = await self._call("listing devices", "dir", "/", False, False)
        # Root entries look like "/28.000028D70100"; bus.N, settings, uncached etc. are
        # left out by bus=False, and the regex drops anything else that is no device.
        found = (e.strip("/") for e in entries)
        return sorted(d for d in found if DEVICE_ID.fullmatch(d))

    async def listing(self) -> dict[str, str | None]:
        # an aliased device is listed under its alias ("/livingroom/"): its id is
        # family.id, read from the device directory
        entries = await self._call("listing devices", "dir", "/", False, False)
        out: dict[str, str | None] = {}
        for entry in (e.strip("/") for e in entries):
            if DEVICE_ID.fullmatch(entry):
                out[entry] = None
                continue
            try:
                fam = await self._call(f"reading /{entry}/family", "read", f"/{entry}/family")
                did = await self._call(f"reading /{entry}/id", "read", f"/{entry}/id")
            except OneWireError as exc:
                if exc.unreachable:
                    raise
                continue  # not a device (a bus or system directory)
            device = f"{fam.decode().strip()}.{did.decode().strip()}"
            if DEVICE_ID.fullmatch(device):
                out[device] = entry
        return dict(sorted(out.items()))

    async def convert(self) -> None:
        await self._call("converting", "write", "/simultaneous/temperature", b"1")

    async def read(self, device: str, attribute: str) -> str:
        _check_device(device)
        _check_attribute(attribute)
        path = f"/{device}/{attribute}"
        data = await self._call(f"reading {path}", "read", path)
        # owfs values are ASCII text; binary attributes (memory pages) are not read
        # through this interface, so a stray byte only becomes U+FFFD.
        return data.decode("utf-8", "replace").strip()

    async def write(self, device: str, attribute: str, value: str) -> None:
        _check_device(device)
        _check_attribute(attribute)
        path = f"/{device}/{attribute}"
        await self._call(f"writing {path}", "write", path, str(value).encode("utf-8"))

    async def idle(self) -> None:
        async with self._limiter:  # not while a worker thread uses the connection
            self._disconnect(self._proxy)

    async def aclose(self) -> None:
        # No await: this runs in ``finally`` blocks of cancelled tasks. No worker thread
        # can hold the proxy now, since run_sync waits for its thread even when cancelled.
        self._drop()

    async def _call(self, what: str, method: str, *args: Any) -> Any:
        fn: Callable[[], Any] = functools.partial(self._blocking_call, what, method, args)
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    # --- below here: runs in a worker thread, one at a time ---

    def _blocking_call(self, what: str, method: str, args: tuple) -> Any:
        try:
            if self._proxy is None:
                self._proxy = _ow.proxy(self.host, self.port, persistent=True)
            return getattr(self._proxy, method)(*args)
        except _ow.OwnetError as exc:
            # The server answered, with an error for this path (e.g. ENOENT).
            raise OneWireError(f"{what}: {exc.strerror} (owserver error {exc.errno})") from None
        except (_ow.Error, OSError, AssertionError) as exc:
            # ConnError, ShortRead, MalformedHeader, OwnetTimeout, socket errors;
            # pyownet checks some replies with ``assert``.
            self._drop()
            raise OneWireError(
                f"owserver {self.host}:{self.port} unreachable while {what}: "
                f"{type(exc).__name__}: {exc}",
                unreachable=True,
            ) from None

    def _drop(self) -> None:
        """Forget the proxy: the next call resolves the host and pings it afresh."""
        proxy, self._proxy = self._proxy, None
        self._disconnect(proxy)

    @staticmethod
    def _disconnect(proxy: Any) -> None:
        if proxy is not None:
            try:
                proxy.close_connection()
            except Exception:  # pyownet asserts on odd errnos; the socket is gone anyway
                pass


class SimulatedBus(OneWire):
    """An in-memory bus for tests: devices and their attribute texts in a dict.

    Tests change it directly: :meth:`add`, :meth:`remove` (the device vanishes),
    :meth:`set`, :meth:`fail` (reads of one device raise until :meth:`heal`), and
    :attr:`down` (every call raises "unreachable", like an owserver that is gone).

    Every call checkpoints, as real I/O would. :attr:`listings` counts
    :meth:`devices` calls (failed ones included); a gateway lists once at the start of
    each poll, so :meth:`wait_listings` lets a test wait for "one more poll has
    completed" without sleeping. :attr:`reads` and :attr:`idles` count those calls.
    """

    def __init__(self, devices: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.data: dict[str, dict[str, str]] = {}
        self.failing: dict[str, str] = {}
        self.down = False
        self.listings = 0
        self.reads = 0
        self.idles = 0
        self.writes: list[tuple[str, str, str]] = []
        self.aliases: dict[str, str] = {}  # device id -> alias, as owserver's alias file
        self.conversions = 0
        self._listed = trio.Event()
        for device, attrs in (devices or {}).items():
            self.add(device, attrs)

    def __str__(self) -> str:
        return "simulated 1-wire bus"

    def add(self, device: str, attrs: Mapping[str, str] | None = None) -> None:
        _check_device(device)
        self.data.setdefault(device, {}).update(attrs or {})

    def remove(self, device: str) -> None:
        self.data.pop(device, None)

    def set(self, device: str, attribute: str, value: str) -> None:
        self.data[device][attribute] = value

    def fail(self, device: str, message: str = "CRC error") -> None:
        self.failing[device] = message

    def heal(self, device: str) -> None:
        self.failing.pop(device, None)

    async def wait_listings(self, count: int) -> None:
        """Return once :meth:`devices` has been called ``count`` times in total."""
        while self.listings < count:
            await self._listed.wait()

    def _check_up(self, what: str) -> None:
        if self.down:
            raise OneWireError(f"simulated owserver unreachable while {what}", unreachable=True)

    async def devices(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        self.listings += 1
        self._listed.set()
        self._listed = trio.Event()
        self._check_up("listing devices")
        return sorted(self.data)

    async def listing(self) -> dict[str, str | None]:
        return {d: self.aliases.get(d) for d in await self.devices()}

    async def convert(self) -> None:
        await trio.lowlevel.checkpoint()
        self._check_up("converting")
        self.conversions += 1

    async def read(self, device: str, attribute: str) -> str:
        _check_device(device)
        _check_attribute(attribute)
        if attribute == "latesttemp" and attribute not in self.data.get(device, {}):
            attribute = "temperature"  # the simulated conversion is instantaneous
        await trio.lowlevel.checkpoint()
        self._check_up(f"reading {device}/{attribute}")
        self.reads += 1
        if device in self.failing:
            raise OneWireError(f"reading /{device}/{attribute}: {self.failing[device]}")
        try:
            return self.data[device][attribute].strip()
        except KeyError:
            raise OneWireError(f"reading /{device}/{attribute}: no such file") from None

    async def idle(self) -> None:
        await trio.lowlevel.checkpoint()
        self.idles += 1

    async def write(self, device: str, attribute: str, value: str) -> None:
        _check_device(device)
        _check_attribute(attribute)
        await trio.lowlevel.checkpoint()
        self._check_up(f"writing {device}/{attribute}")
        if device not in self.data or device in self.failing:
            raise OneWireError(f"writing /{device}/{attribute}: no such device")
        self.data[device][attribute] = str(value)
        self.writes.append((device, attribute, str(value)))
