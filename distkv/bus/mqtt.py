"""The MQTT bus: DistKV replication over a real broker (mosquitto), via paho-mqtt.

This is the only module that imports paho. Semantics (topics, QoS, will, back-pressure)
are described in :mod:`distkv.bus`; this module is the mechanics:

* **paho without its thread.** paho 2.x (``CallbackAPIVersion.VERSION2``, MQTT v5) is
  driven from trio: a reader task waits for ``wait_readable(sock)`` and calls
  ``loop_read()``; a writer task sleeps until paho's "register write" callback says
  there is output, then waits for ``wait_writable`` and calls ``loop_write()``; a third
  task calls ``loop_misc()`` once a second (keepalive). Callbacks therefore run on the
  trio thread, inside ``loop_read``/``loop_write``, and only do non-blocking work
  (``send_nowait`` into subscription channels, setting events).
* **TCP_NODELAY** on every connection (paho never sets it): with Nagle's algorithm and
  the broker's delayed ACKs, small publications written while an earlier one is not yet
  acknowledged wait for that ACK, so paced updates (one every 10 ms) reached the broker
  in clumps every ~43 ms (cross-node watch p50 13.7 ms; with TCP_NODELAY 1.3 ms). Set
  in paho's ``on_socket_open`` hook, before the CONNECT packet is written, so it holds
  for every reconnect and for every user of this module (replication, gateways).
* **Connecting** does DNS and a blocking TCP connect inside paho (``reconnect()``), so it
  runs in a worker thread; no trio task touches the client meanwhile (publications go to
  the bus's own offline queue while the link is down). Before a socket is closed, paho's
  ``on_socket_close`` hook calls ``trio.lowlevel.notify_closing`` so no task is left
  waiting on a dead file descriptor.
* **Reconnect** forever with exponential backoff (0.1 s doubling to 1 s by default,
  reset after a successful CONNACK). After each CONNACK: resubscribe everything (MQTT v5
  subscription identifiers map deliveries to subscriptions), wait for the SUBACKs,
  republish presence, flush the offline queue, then report ``connected``. paho itself
  re-sends QoS 1 messages that were in flight when the link broke.
* **MQTT v5 by default** (also the server's), for subscription identifiers (each
  delivery names the subscription it is for, so overlapping subscriptions get exactly
  one copy each and retained replays reach only the new subscription) and for
  ``no_local`` (replication does not get its own updates back: one packet read per
  bus message on the writing node instead of two, one delivery less for mosquitto). A broker that refuses v5 ("unsupported protocol version") gets v3.1.1
  from the next attempt on (:meth:`MqttBus._use_v311`); ``mqtt_version=4`` asks for
  v3.1.1 only. With v3.1.1 deliveries are matched locally (see :mod:`distkv.bus` for
  what that means for overlapping subscriptions).
* **Leaner paho** (:class:`_Client`, a subclass): paho reads every packet with three
  ``recv`` calls and builds reason-code, property and message objects for each. On the
  replication hot path that was most of a node's bus cost (measured: CPU per replicated
  sequential set, node A 413 -> 303 us, node B 183 -> 83 us, loaded 2-core VM). So one
  ``recv`` fills a buffer that paho reads from; a plain PUBACK skips the objects; a
  PUBLISH (QoS 0/1; on v5 one whose only properties are subscription identifiers,
  which is what our own publications carry) goes straight to
  :meth:`MqttBus._dispatch`. Everything else (other v5 properties, QoS 2, malformed
  packets) takes paho's own path. Publishing inside :meth:`Bus.writing_together`
  sends from the caller (kernel-first) and wakes the writer task only for what the
  socket does not take.
* **Logging**: the first failed attempt after being connected is a warning ("broker
  unreachable, retrying"), further attempts are debug; reconnection is info.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from distkv.exceptions import ConfigError

from .backoff import backoff_delays
from .bus import Bus
from .subscription import SubscriptionGroup
from .types import DEFAULT_MAX_PENDING, BusError, Outgoing

logger = logging.getLogger(__name__)

__all__ = ["MqttBus", "open_mqtt_bus", "parse_mqtt_uri"]

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
# MQTT v5 DISCONNECT reason "Session taken over": another client connected with our id.
_TAKEN_OVER = 0x8E
# MQTT v5 CONNACK "Unsupported Protocol Version" (paho also reports a 3.1.1 broker's
# "unacceptable protocol version" answer to a v5 CONNECT as this).
_UNSUPPORTED_VERSION = 0x84
# Packets handled per wake-up of the reader before it yields to other tasks.
_READ_BURST = 256


def parse_mqtt_uri(uri: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt[s]://[user[:password]@]host[:port]`` -> (host, port, user, password)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"MQTT URI must start with mqtt:// or mqtts:// : {uri!r}")
    if not parts.hostname:
        raise ConfigError(f"MQTT URI has no host: {uri!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"MQTT URI must not have a path or query: {uri!r}")
    try:
        port = parts.port or (DEFAULT_TLS_PORT if parts.scheme == "mqtts" else DEFAULT_PORT)
    except ValueError:
        raise ConfigError(f"MQTT URI has a bad port: {uri!r}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password


def _set_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open`` hook (runs in the connect thread, before CONNECT is
    sent): switch off Nagle's algorithm, see the module docstring."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not fatal: the bus works, only slower under load
            logger.warning("cannot set TCP_NODELAY on the MQTT socket: %r", exc)


def _set_tls(c: Any, tls: dict) -> None:
    """TLS for ``mqtts://``: ``ca`` (file to trust; default the system's), ``cert`` and
    ``key`` (client certificate), ``insecure`` (do not check the broker's name)."""
    unknown = set(tls) - {"ca", "cert", "key", "insecure"}
    if unknown:
        raise ConfigError(f"unknown MQTT TLS option(s): {', '.join(sorted(unknown))}")
    try:
        c.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"MQTT TLS setup: {exc}") from None
    if tls.get("insecure"):
        c.tls_insecure_set(True)


_PUBACK_OK = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)
_RECV_SIZE = 65536


class _Client(paho.Client):
    """paho with two shortcuts on the replication hot path (see the module docstring).

    It overrides paho's private reader (``_packet_read``, ``_in_packet``,
    ``_handle_publish``, ``_handle_pubackcomp``, ``_sock_recv``), so pyproject.toml pins
    paho-mqtt to the minor version it was tested with (2.2); tests/bus runs it against
    a real mosquitto on v5 and v3.1.1.

    * **Buffered reads.** paho reads a packet with three ``recv`` calls (type byte,
      length bytes one by one, body); here one ``recv`` fills a buffer, a complete
      packet in it is framed in one go, and paho's reader (for a packet split across
      reads) reads from the buffer: a burst of packets costs one system call.
    * **Lean PUBACK.** A plain PUBACK (packet id only: every v3.1.1 one, and a v5 one
      without reason code) is handled without building reason-code and property
      objects; anything else goes through paho unchanged.
    * **Lean PUBLISH** (QoS 0 and 1): topic, payload, retain flag and (v5) the
      subscription identifiers go straight to ``on_raw_message(topic_bytes, payload,
      retain, sids)``, without paho's message and property objects, logging and
      callback lookup. A v5 packet with any other property, and QoS 2, go through
      paho's ``on_message``.
    """

    def __init__(
        self,
        *a: Any,
        on_raw_message: Callable[[bytes, bytes, bool, list[int] | None], None],
        **kw: Any,
    ) -> None:
        super().__init__(*a, **kw)
        self._rbuf = bytearray()
        self._on_raw_message = on_raw_message

    @property
    def _v5(self) -> bool:
        return self._protocol == MQTTProtocolVersion.MQTTv5

    @property
    def buffered(self) -> bool:
        """Whether received bytes wait in the buffer (the kernel no longer sees them)."""
        return bool(self._rbuf)

    def reset_buffer(self) -> None:
        self._rbuf.clear()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        if not buf:
            data = super()._sock_recv(_RECV_SIZE)
            if len(data) <= bufsize:
                return data
            buf += data
        chunk = bytes(buf[:bufsize])
        del buf[:bufsize]
        return chunk

    def _packet_read(self) -> MQTTErrorCode:
        # A complete packet waiting in the buffer is framed here in one go; a partial
        # one (or a packet paho is in the middle of) is left to paho's reader.
        buf = self._rbuf
        if self._in_packet["command"] != 0:
            return super()._packet_read()
        if not buf:
            try:
                data = super()._sock_recv(_RECV_SIZE)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            buf += data
        n = len(buf)
        if n < 2:
            return super()._packet_read()
        length = 0
        mult = 1
        pos = 1
        while True:
            if pos >= n or pos > 4:
                return super()._packet_read()  # length incomplete (or malformed)
            b = buf[pos]
            length += (b & 127) * mult
            mult *= 128
            pos += 1
            if not b & 128:
                break
        end = pos + length
        if end > n:
            return super()._packet_read()
        self._in_packet = {
            "command": buf[0],
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": length,
            "packet": bytearray(buf[pos:end]),
            "to_process": 0,
            "pos": 0,
        }
        del buf[:end]
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            logger.debug("bus: malformed MQTT packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        return rc

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        cmd = self._in_packet["command"]
        qos = (cmd & 0x06) >> 1
        packet = self._in_packet["packet"]
        n = len(packet)
        if qos == 2 or n < 2:
            return super()._handle_publish()  # paho also reports malformed packets
        pos = 2 + ((packet[0] << 8) | packet[1])
        end_topic = pos
        mid = 0
        if qos:
            if pos + 2 > n:
                return super()._handle_publish()
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        elif pos > n:
            return super()._handle_publish()
        sids = None
        if self._v5:
            # properties: only subscription identifiers (what the broker adds to our
            # own publications) are read here; anything else is paho's to parse
            sids = []
            length, pos = _varint(packet, pos, n)
            end = pos + length
            if length < 0 or end > n:
                return super()._handle_publish()
            while pos < end:
                if packet[pos] != 0x0B:
                    return super()._handle_publish()
                sid, pos = _varint(packet, pos + 1, end)
                if sid < 0:
                    return super()._handle_publish()
                sids.append(sid)
        self._on_raw_message(bytes(packet[2:end_topic]), bytes(packet[pos:]), bool(cmd & 1), sids)
        if qos:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _varint(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``pos``: ``(value, next position)``; value -1
    if it is cut off or longer than four bytes."""
    value = 0
    shift = 0
    while pos < end and shift < 28:
        b = buf[pos]
        pos += 1
        value |= (b & 127) << shift
        if not b & 128:
            return value, pos
        shift += 7
    return -1, pos


class _SubAck:
    __slots__ = ("event", "codes")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.codes: list[ReasonCode] | None = None  # None: the link broke first


class MqttBus(Bus):
    """A bus on an MQTT v5 broker. Create it with :func:`open_mqtt_bus`."""

    def __init__(
        self,
        uri: str,
        root: str,
        node: str,
        *,
        will: bytes | None = None,
        keepalive: int = 15,
        min_backoff: float = 0.1,
        max_backoff: float = 1.0,
        connect_timeout: float = 5.0,
        close_timeout: float = 2.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        client_id: str | None = None,
        mqtt_version: int = 5,
        presence_topic: str | None = None,
        tls: Mapping[str, Any] | None = None,
        max_takeovers: int | None = None,
    ) -> None:
        super().__init__(
            root, node, will=will, max_pending=max_pending, presence_topic=presence_topic
        )
        host, port, user, password = parse_mqtt_uri(uri)
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.client_id = client_id or f"distkv-{root}-{node}"

        if mqtt_version not in (4, 5):
            raise ConfigError("mqtt_version must be 5 (MQTT v5) or 4 (MQTT v3.1.1)")
        self.mqtt_version = mqtt_version
        if mqtt_version == 5:
            c = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
                on_raw_message=self._on_raw_message,
            )
        else:
            c = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=True,
                on_raw_message=self._on_raw_message,
            )
        if user is not None:
            c.username_pw_set(user, password)
        if urlsplit(uri).scheme == "mqtts" or tls is not None:
            _set_tls(c, dict(tls or {}))
        # a client id clash makes two clients kick each other out forever: give up with
        # one line after this many "session taken over" within a minute (None: never)
        self.max_takeovers = max_takeovers
        self._takeovers: list[float] = []
        self._established_at = 0.0
        # when the broker was first found missing (lost or unreachable), None while up:
        # its return is logged at the level its loss was, so a journal read at the
        # default level does not end on "unreachable; retrying" once it is back
        self._down_since: float | None = None
        c.connect_timeout = connect_timeout
        if self.will is not None:
            c.will_set(self.full_topic(self.presence_topic), self.will, qos=1, retain=True)
        if mqtt_version == 5:
            c.connect_async(host, port, keepalive=keepalive, clean_start=True)
        else:
            c.connect_async(host, port, keepalive=keepalive)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_socket_open = _set_nodelay
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        self._client = c

        self._inflight: dict[int, tuple[int, int]] = {}  # mid -> (qos, seq)
        self._sub_acks: dict[int, _SubAck] = {}
        self._trio_thread = threading.get_ident()
        self._sock: socket.socket | None = None
        self._lost = trio.Event()
        self._connack = trio.Event()
        self._connack_ok = False
        self._connack_reason = ""
        self._write_wanted = trio.Event()
        self._downgrade = False  # the broker refused MQTT v5: try 3.1.1 next
        self._closing = False
        self._serve_scope: trio.CancelScope | None = None

    # ------------------------------------------------------------------ lifecycle

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, serve the connection, reconnect with backoff; until closed."""
        self._trio_thread = threading.get_ident()
        with trio.CancelScope() as self._serve_scope:
            task_status.started()
            delays = backoff_delays(self.min_backoff, self.max_backoff)
            failures = 0
            while not self._closing:
                try:
                    established = await self._connect_and_run()
                except OSError as exc:
                    established = False
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    reason = self._connack_reason or "connection lost"
                if self._closing:
                    break
                if self._downgrade:
                    self._use_v311()
                    continue
                if established and trio.current_time() - self._established_at < 5:
                    # dropped by the broker right after connecting: what mosquitto does
                    # to the older of two clients with one id (paho often does not see
                    # the v5 "session taken over" DISCONNECT before the socket closes)
                    self._takeovers.append(trio.current_time())
                self._check_takeovers()
                if self._down_since is None:
                    self._down_since = trio.current_time()
                if established:
                    delays = backoff_delays(self.min_backoff, self.max_backoff)
                    failures = 0
                    logger.warning(
                        "bus %s: lost MQTT broker %s:%d (%s); reconnecting",
                        self.node,
                        self.host,
                        self.port,
                        reason,
                    )
                else:
                    self.stats.connect_failures += 1
                    failures += 1
                    log = logger.warning if failures == 1 else logger.debug
                    log(
                        "bus %s: MQTT broker %s:%d unreachable (%s); retrying",
                        self.node,
                        self.host,
                        self.port,
                        reason,
                    )
                await trio.sleep(next(delays))

    def _use_v311(self) -> None:
        """The broker refused MQTT v5 (a 3.1.1-only broker): speak 3.1.1 from now on,
        as paho itself steps down from 3.1.1 to 3.1. Replication then sees its own
        updates echoed (no ``no_local``) and drops them by topic; overlapping
        subscriptions are matched locally (:mod:`distkv.bus`)."""
        self._downgrade = False
        self.mqtt_version = 4
        c = self._client
        c._protocol = MQTTProtocolVersion.MQTTv311
        c._clean_session = True
        logger.info(
            "bus %s: MQTT broker %s:%d does not speak MQTT v5; using 3.1.1",
            self.node,
            self.host,
            self.port,
        )

    def _check_takeovers(self) -> None:
        now = trio.current_time()
        self._takeovers = [t for t in self._takeovers if now - t < 60]
        if self.max_takeovers is not None and len(self._takeovers) >= self.max_takeovers:
            raise BusError(
                f"MQTT client id {self.client_id!r} is probably used by another client: the "
                f"broker {self.host}:{self.port} dropped us {len(self._takeovers)} times within "
                "a minute right after connecting; give each client its own id"
            )

    async def _connect_and_run(self) -> bool:
        """One connection: returns True if it got as far as a successful CONNACK."""
        client = self._client
        self._lost = trio.Event()
        self._connack = trio.Event()
        self._connack_ok = False
        self._connack_reason = ""
        # DNS and TCP connect block: do them in a thread. Nothing else touches the
        # client while the link is down. Not abandoned on cancel, so no socket leaks.
        client.reset_buffer()  # nothing of the old connection may be read as new
        await trio.to_thread.run_sync(client.reconnect)
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        self._sock = sock
        established = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, sock)
                nursery.start_soon(self._writer, sock)
                nursery.start_soon(self._misc)
                nursery.start_soon(self._cancel_when_lost, nursery.cancel_scope)
                with trio.move_on_after(self.connect_timeout):
                    await self._connack.wait()
                if not self._connack_ok:
                    if not self._connack_reason:
                        self._connack_reason = "no CONNACK"
                    nursery.cancel_scope.cancel()
                    return False
                established = True
                self._established_at = trio.current_time()
                if self._down_since is None:
                    logger.info(
                        "bus %s: connected to MQTT broker %s:%d", self.node, self.host, self.port
                    )
                else:
                    logger.warning(
                        "bus %s: MQTT broker %s:%d is back after %.1f s",
                        self.node,
                        self.host,
                        self.port,
                        self._established_at - self._down_since,
                    )
                    self._down_since = None
                try:
                    await self._resubscribe_all()
                except BusError as exc:
                    logger.error("bus %s: %s", self.node, exc)
                self._link_restored()
                await trio.sleep_forever()
        finally:
            self._sock = None
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            self._after_link()
        return established

    async def _cancel_when_lost(self, scope: trio.CancelScope) -> None:
        await self._lost.wait()
        scope.cancel()

    def _after_link(self) -> None:
        # QoS 0 messages not yet written went down with the socket; QoS 1 messages stay
        # in paho and are re-sent after the next CONNACK.
        lost = [mid for mid, (qos, _) in self._inflight.items() if qos == 0]
        for mid in lost:
            del self._inflight[mid]
        self.stats.dropped_offline += len(lost)
        for ack in self._sub_acks.values():
            ack.event.set()
        self._sub_acks.clear()
        self._link_lost()

    async def _shutdown(self) -> None:
        """Clean close: offline presence, wait for acknowledgements, DISCONNECT (which
        suppresses the will). Bounded by ``close_timeout``."""
        if self._closed:
            return
        self._closing = True
        with trio.move_on_after(self.close_timeout):
            if self._link_up:
                if self.will is not None:
                    self._seq += 1
                    self._transport_send(
                        Outgoing(
                            self._seq, self.full_topic(self.presence_topic), self.will, 1, True
                        )
                    )
                    self.stats.published += 1
                await self.drain()
                self._client.disconnect()
                await self._lost.wait()
        self._stop()

    def _stop(self) -> None:
        self._closing = True
        if self._serve_scope is not None:
            self._serve_scope.cancel()
        self._mark_closed()

    def _transport_cut(self) -> None:
        """Shut the TCP connection down without DISCONNECT (the broker publishes the
        will); the bus reconnects like after a network failure."""
        sock = self._sock
        if sock is not None and sock.fileno() != -1:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    async def _transport_crash(self) -> None:
        """Die without DISCONNECT (the broker publishes the will); no reconnect."""
        if self._closed:
            return
        self._closing = True
        if self._sock is not None:
            self._transport_cut()
            await self._lost.wait()
        self._stop()
        await trio.lowlevel.checkpoint()

    @property
    def connection_socket(self) -> socket.socket | None:
        """The current connection's socket (None while disconnected)."""
        return self._sock

    # -------------------------------------------------------------- network tasks

    async def _reader(self, sock: socket.socket) -> None:
        client = self._client
        try:
            while client.socket() is sock:
                if client.buffered:
                    # a burst left complete packets in the buffer: the kernel does
                    # not know about them, so waiting for it would stall
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(sock)
                self._bursting = True
                try:
                    alive = self._read_burst(client, sock)
                finally:
                    self._end_burst()
                if not alive:
                    return
        except (trio.ClosedResourceError, OSError):
            pass
        finally:
            self._lost.set()

    def _read_burst(self, client: Any, sock: socket.socket) -> bool:
        """loop_read() handles a bounded number of packets; keep going while there is
        more, so that one wake-up handles a burst. False: the connection is gone."""
        for _ in range(_READ_BURST):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
            if client.socket() is not sock:
                return False
            if client.buffered:
                continue
            if isinstance(sock, ssl.SSLSocket):
                # TLS: decrypted bytes may wait inside the SSL object, which the kernel
                # (and wait_readable) cannot see; MSG_PEEK is not allowed on it
                if not sock.pending():
                    break
                continue
            break  # the buffered read took all the kernel had (wait_readable says if not)
        return client.socket() is sock

    async def _writer(self, sock: socket.socket) -> None:
        client = self._client
        try:
            while client.socket() is sock:
                if not client.want_write():
                    self._write_wanted = trio.Event()
                    await self._write_wanted.wait()
                    continue
                # Try first: the socket is usually writable, and waiting for epoll to say
                # so would cost a scheduler round per burst.
                if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
                if client.socket() is not sock:
                    return
                if client.want_write():
                    await trio.lowlevel.wait_writable(sock)
        except (trio.ClosedResourceError, OSError):
            pass
        finally:
            self._lost.set()

    async def _misc(self) -> None:
        while True:
            await trio.sleep(1.0)
            self._client.loop_misc()

    # ------------------------------------------------------------ paho callbacks

    def _on_trio_thread(self) -> bool:
        return threading.get_ident() == self._trio_thread

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        # Called from the connect thread for the CONNECT packet: the writer task checks
        # want_write() when it starts, so that case needs no wake-up. Inside
        # writing_together() the caller writes (write_now), and wakes the writer only
        # for what the socket does not take.
        if self._on_trio_thread() and not self._together:
            self._write_wanted.set()

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._on_trio_thread() and sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connack_ok = not reason.is_failure
        if reason.value == _UNSUPPORTED_VERSION and self.mqtt_version == 5:
            self._downgrade = True
        # paho keeps at most 20 QoS 1 messages in flight, which is exactly the Receive
        # Maximum mosquitto announces (and paho cannot change it on a live connection).
        # That window, not CPU, bounds QoS 1 throughput (~10k msg/s on loopback).
        if reason.is_failure:
            self._connack_reason = f"broker refused connection: {reason}"
        self._connack.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if not self._on_trio_thread():
            return
        # Stop handing messages to paho at once; the connection task cleans up.
        self._link_up = False
        if reason is not None and reason.is_failure and not self._connack_reason:
            self._connack_reason = str(reason)
        if reason is not None and reason.value == _TAKEN_OVER:
            logger.warning(
                "bus %s: the broker says another client connected with our client id %r",
                self.node,
                self.client_id,
            )
        self._lost.set()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # A foreign client published garbage; it must not take the bus down.
            logger.warning("bus %s: ignoring message with a non-UTF-8 topic", self.node)
            return
        sids = getattr(msg.properties, "SubscriptionIdentifier", None)
        self._dispatch(topic, msg.payload, bool(msg.retain), sids)

    def _on_raw_message(
        self, topic: bytes, payload: bytes, retain: bool, sids: list[int] | None
    ) -> None:
        try:
            full = topic.decode()
        except UnicodeDecodeError:
            logger.warning("bus %s: ignoring message with a non-UTF-8 topic", self.node)
            return
        self._dispatch(full, payload, retain, sids)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        if self._inflight.pop(mid, None) is None:
            return
        if reason.is_failure:
            self.stats.publish_errors += 1
            logger.warning("bus %s: broker refused publication: %s", self.node, reason)
        self._notify_progress()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, codes: list[ReasonCode], properties: Any
    ) -> None:
        ack = self._sub_acks.pop(mid, None)
        if ack is not None:
            ack.codes = list(codes)
            ack.event.set()

    # ---------------------------------------------------------- transport hooks

    def write_now(self) -> None:
        # loop_write() does a non-blocking send of what paho has queued; whatever the
        # socket does not take stays queued for the writer task.
        c = self._client
        if c is None or not c.want_write():
            return
        if self._link_up and not self._bursting:
            try:
                c.loop_write()
            except OSError:
                pass  # the reader/writer tasks notice a broken socket
            if not c.want_write():
                return
        self._write_wanted.set()  # the rest (or all of it) is the writer task's

    def _transport_send(self, out: Outgoing) -> None:
        info = self._client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
        # QoS 1 messages stay with paho even if the socket just broke (re-sent after the
        # next CONNACK); a QoS 0 one that could not be queued is simply gone.
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or out.qos > 0:
            self._inflight[info.mid] = (out.qos, out.seq)
        else:
            self.stats.dropped_offline += 1

    def _inflight_count(self) -> int:
        return len(self._inflight)

    def _oldest_inflight_seq(self) -> int | None:
        # dicts keep insertion order, which is publish order
        for _qos, seq in self._inflight.values():
            return seq
        return None

    async def _transport_subscribe(self, groups: list[SubscriptionGroup]) -> None:
        pending: list[tuple[SubscriptionGroup, _SubAck]] = []
        for group in groups:
            if self.mqtt_version == 5:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = group.sid
                rc, mid = self._client.subscribe(
                    self.full_topic(group.pattern),
                    options=SubscribeOptions(qos=group.qos, noLocal=group.no_local),
                    properties=props,
                )
            else:
                rc, mid = self._client.subscribe(self.full_topic(group.pattern), qos=group.qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                return  # the link is breaking; everything is redone on reconnect
            ack = _SubAck()
            self._sub_acks[mid] = ack
            pending.append((group, ack))
        epoch = self._epoch
        for group, ack in pending:
            await ack.event.wait()
            if ack.codes is None or epoch != self._epoch:
                return  # link lost; redone on reconnect
            bad = [c for c in ack.codes if c.is_failure]
            if bad:
                raise BusError(f"broker refused subscription to {group.pattern!r}: {bad[0]}")
            group.epoch = epoch

    def _transport_unsubscribe(self, group: SubscriptionGroup) -> None:
        self._client.unsubscribe(self.full_topic(group.pattern))


@asynccontextmanager
async def open_mqtt_bus(
    uri: str, root: str, node: str, *, bus_class: type[MqttBus] | None = None, **options: Any
) -> AsyncIterator[MqttBus]:
    """Open a bus on the broker at ``uri`` (``mqtt://[user:pass@]host[:port]``);
    ``options`` are :class:`MqttBus`'s (``will``, ``keepalive``, backoff and timeouts,
    ``max_pending``, ``client_id``, ``mqtt_version``, ``presence_topic``, ``tls`` (a
    mapping: ``ca``, ``cert``, ``key``, ``insecure``; implied by ``mqtts://``),
    ``max_takeovers``). ``bus_class``: a subclass of :class:`MqttBus` to build (tests
    pass one with :class:`~distkv.testing.busfaults.FaultInjection`).

    Returns at once, connected or not: the bus connects and reconnects in the
    background (``await bus.wait_connected()`` under ``trio.fail_after`` to insist).
    ``will`` is the node's offline presence payload. On exit the bus closes cleanly
    (offline presence, pending QoS 1 flushed, DISCONNECT) within ``close_timeout``.
    """
    bus = (bus_class or MqttBus)(uri, root, node, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(bus._serve)
            try:
                yield bus
            finally:
                with trio.CancelScope(shield=True):
                    await bus._shutdown()
                bus._stop()
    except BaseExceptionGroup as group:
        # The nursery wraps whatever the caller's block raised; hand it back unwrapped
        # so that `async with open_mqtt_bus(...)` is transparent to exceptions.
        exc = _single(group)
        if exc is None:
            raise
        raise exc from None


def _single(group: BaseExceptionGroup) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
