"""The replication bus: what nodes use to talk to each other, independent of transport.

A *bus* connects one node to the other nodes of one network. There are two transports
with the same behaviour: :mod:`distkv.bus.mqtt` (a real broker, via paho-mqtt, MQTT v5
or 3.1.1) and :mod:`distkv.bus.memory` (an in-process broker stand-in with deterministic
fault injection). Both are opened as async context managers that own their tasks::

    async with open_bus("mqtt://127.0.0.1:1883", root="distkv", node="n1",
                        will=offline_payload) as bus:
        async with bus.subscribe("update/#") as sub:
            await bus.set_presence(presence_payload)
            await bus.publish("update/n1", payload)
            async for msg in sub:            # Message(topic, payload, retained, lost)
                ...

Payloads are opaque bytes (msgpack from the replication layer); the bus never looks
inside.

Modules: :mod:`~distkv.bus.types` (messages, counters, errors), :mod:`~distkv.bus.topics`
(validation, matching), :mod:`~distkv.bus.subscription` (the queued and handler delivery
modes), :mod:`~distkv.bus.bus` (the state machine every transport shares),
:mod:`~distkv.bus.factory` (:func:`open_bus`), the two transports, and
:mod:`distkv.testing.busfaults` (fault injection for tests: ``drop_connection``,
``crash``). Import the public names from :mod:`distkv.bus`.

Topic layout
------------
Every topic is ``<root>/<suffix>``; the API takes and returns only the suffix. The root
(``server.root``, default ``distkv``) names the network: buses with different roots share
nothing, not even presence, even on the same broker. ``root=""`` means no prefix at all:
the MQTT gateway uses that to speak devices' own topics (``stat/plug1/POWER``), with its
own ``presence_topic`` (its online/offline status, with the will).

``<root>/presence/<node>``
    Owned by the bus. Retained, QoS 1. The node's presence record (the server puts its
    name, client address, ticks and ready flag in it). The connection's last will is the
    node's *offline* payload on the same topic (retained, QoS 1), so the broker replaces
    the record when the node dies or loses its connection without saying goodbye. A clean
    close publishes the offline payload itself, then disconnects normally (an MQTT v5
    normal DISCONNECT suppresses the will). After every reconnect the bus republishes the
    current presence, because the will may have overwritten it meanwhile. Peers discover
    each other by subscribing to ``presence/+``; no host map or DNS is needed.

Everything else is chosen by the replication layer; the bus treats it as opaque. The
recommended layout is ``update/<origin-node>`` for replicated changes (QoS 1, not
retained) and ``repair/<target-node>`` for missing-data requests and answers (QoS 1,
addressed to one node so that others need not receive them).

Quality of service, retain, sessions
------------------------------------
* **QoS 1 by default** (at least once). Duplicates are harmless because applying an update
  is idempotent. QoS 2 would cost two more round trips per message and still would not
  prevent loss: mosquitto silently drops QoS 1/2 messages to a subscriber whose queue is
  full (``max_queued_messages``, default 1000). The replication layer detects gaps by
  tick and repairs them; the bus does not pretend to be lossless. QoS 0 is available for
  best-effort traffic.
* **Subscription QoS.** The broker delivers at the lower of the publication's and the
  subscription's QoS. ``subscribe(..., qos=0)`` saves a PUBACK per delivered message
  (a send by the receiver, a wake-up of the broker). With clean sessions it loses
  nothing that QoS 1 would keep: messages in flight to a node whose connection breaks
  are dropped either way, and mosquitto bounds QoS 0 output by the same
  ``max_queued_messages``. The memory transport delivers at QoS 1 regardless.
* **Retain** only for state, i.e. presence. Retained messages reach a subscription with
  ``retained=True`` when it is made -- and again after every reconnect (resubscribing
  re-delivers them) or when a second subscription with the same pattern is made on the
  same bus (it shares the broker subscription). Treat retained messages as state, not
  events. Live messages arrive with ``retained=False`` even if published with retain.
  Publishing an empty payload with ``retain=True`` clears a retained topic (MQTT).
* **Clean sessions** (MQTT v5 clean start, session expiry 0). A persistent session would
  make the broker queue unbounded traffic for a dead node. Consequence: messages
  published while a node is disconnected are lost *for that node*; it catches up through
  repair. The node's own QoS 1 publications are not lost across a reconnect (see below).
* **Keepalive** 15 s by default: a node whose TCP connection closes is reported offline
  at once; a silently vanished one (power cut, cable) after 1.5 x keepalive.
* A bus receives its own publications if it subscribes to them (MQTT default); filter by
  topic or payload if that matters.
* ``subscribe(..., no_local=True)`` asks the broker not to send this bus its own
  publications (MQTT v5 "no local", and the memory transport). MQTT 3.1.1 has no such
  option: there they still arrive, so a consumer must filter them itself anyway.
* Overlapping subscriptions on one bus: with MQTT v5 (and the memory transport) each
  gets exactly one copy of every message, and a retained replay reaches only the
  subscription being made (subscription identifiers map every delivery to the
  subscription it is for). MQTT 3.1.1 has no identifiers, so deliveries are matched
  locally: each matching subscription gets every copy the broker sends, which is one
  per message with mosquitto but may be one per matching pattern with other brokers,
  and a retained replay reaches every matching subscription of the bus. The server's
  replication (v5 by default, 3.1.1 on a broker that refuses v5) subscribes to
  patterns that do not overlap.

Ordering: messages from one bus reach a subscription in publish order, except that QoS 1
messages re-sent after a reconnect may arrive twice, and mixing QoS 0 and 1 may reorder.

Back-pressure and loss (the explicit decisions)
-----------------------------------------------
* **Outgoing.** At most ``max_pending`` messages may be accepted but not yet done (QoS 0:
  written to the socket; QoS 1: acknowledged by the broker), including messages queued
  while disconnected. :meth:`Bus.publish` waits for room; :meth:`Bus.publish_nowait` never
  blocks and raises :class:`BusOverflowError` instead (the hot path decides: the
  replication layer can count it and rely on repair).
* **While disconnected** QoS 1 messages are queued (within ``max_pending``) and sent in
  order after reconnecting; QoS 0 messages are discarded and counted
  (``stats.dropped_offline``), like MQTT itself would. Nothing blocks: the server keeps
  serving while the bus retries with exponential backoff (0.1 s doubling to 1 s).
* **Incoming.** Each subscription has a bounded buffer. The reader never blocks on a slow
  consumer (that would stall presence and keepalive for every subscription); a message
  that does not fit is dropped and counted (``Subscription.dropped``,
  ``stats.dropped_full``), and the next message delivered on that subscription carries
  ``lost=N``, the number dropped just before it. This is the same failure mode as the
  broker's own queue limit, so one repair mechanism covers both.
"""

from .backoff import backoff_delays
from .bus import Bus
from .factory import open_bus
from .subscription import Subscription, SubscriptionGroup
from .topics import PRESENCE, topic_matches, validate_pattern, validate_topic
from .types import (
    DEFAULT_MAX_PENDING,
    DEFAULT_SUB_BUFFER,
    BusClosedError,
    BusError,
    BusOverflowError,
    BusStats,
    Message,
    Outgoing,
)

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SUB_BUFFER",
    "PRESENCE",
    "Bus",
    "BusClosedError",
    "BusError",
    "BusOverflowError",
    "BusStats",
    "Message",
    "Outgoing",
    "Subscription",
    "SubscriptionGroup",
    "backoff_delays",
    "open_bus",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]
