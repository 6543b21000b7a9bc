"""What a node accepts from the replication bus: authenticity and sane bounds. Pure.

Anybody who can publish on the broker (a compromised Wi-Fi plug on the house broker)
could otherwise forge updates: create an admin user on every node, store a type
whose check runs their code, switch auth off, or brick the cluster with a tick near
2**64 or a clock an hour ahead that every node then adopts for good.

Two layers, both applied by the shell before :meth:`Replica.receive`:

* :class:`BusSeal`: with a network key (``server.network_key``, the same on every
  node) every payload carries a keyed BLAKE2b MAC; a payload without a valid one is
  dropped and counted. Without a key nothing is sealed (a lone node, or a network
  that trusts its broker: say so in the docs).
* :func:`refusal`: every message is checked for shapes and bounds that the replica
  would otherwise trust: node names, ticks below :data:`MAX_TICK`, tocks whose wall
  clock is not more than ``max_ahead_ms`` ahead of ours (a peer with a clock far
  ahead is refused and reported, never adopted), chains of ``[node, tick]`` links,
  paths whose only ``None`` is the first element (the system tree), horizons within
  the announced ticks.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .clock import SHIFT

#: Ticks count a node's own writes: 2**62 is beyond any real node's life, and far
#: enough from 2**64 that arithmetic on them never overflows msgpack's range.
MAX_TICK = 1 << 62

_MAGIC = b"\xd1K1"  # not a msgpack map/array start: a sealed payload is unmistakable
_MAC_LEN = 16


class BusSeal:
    """Seal and open bus payloads with the network key (see the module docstring)."""

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes | None):
        if isinstance(key, str):
            key = key.encode()
        if key is not None and not (16 <= len(key) <= 64):
            raise ValueError("the network key must have 16 to 64 bytes")
        self._key = key

    @property
    def active(self) -> bool:
        return self._key is not None

    def _mac(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=_MAC_LEN).digest()

    def seal(self, payload: bytes) -> bytes:
        if self._key is None:
            return payload
        return _MAGIC + self._mac(payload) + payload

    @staticmethod
    def looks_sealed(data: bytes) -> bool:
        """Whether ``data`` has the form of a sealed payload (whatever the key): how a
        node without a key tells "the others have one" from a foreign publisher."""
        return len(data) >= len(_MAGIC) + _MAC_LEN and data[: len(_MAGIC)] == _MAGIC

    def open(self, data: bytes) -> bytes | None:
        """The payload if ``data`` is sealed with our key (or we have none); else None."""
        if self._key is None:
            return data
        n = len(_MAGIC)
        if len(data) < n + _MAC_LEN or data[:n] != _MAGIC:
            return None
        mac, payload = data[n : n + _MAC_LEN], data[n + _MAC_LEN :]
        return payload if hmac.compare_digest(mac, self._mac(payload)) else None


def _is_tick(v: Any) -> bool:
    return type(v) is int and 0 <= v < MAX_TICK


def _name(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 255


def _chain_problem(chain: Any) -> str | None:
    if not isinstance(chain, list | tuple) or len(chain) > 10_000:
        return "chain is not a list of links"
    for lk in chain:
        if not (isinstance(lk, list | tuple) and len(lk) == 2 and _name(lk[0]) and _is_tick(lk[1])):
            return f"bad chain link {lk!r}"
    return None


def _ranges_problem(ranges: Any) -> str | None:
    if not isinstance(ranges, list | tuple):
        return "ranges are not a list"
    for r in ranges:
        if not (isinstance(r, list | tuple) and len(r) == 2 and _is_tick(r[0]) and _is_tick(r[1])):
            return f"bad tick range {r!r}"
    return None


#: The keys an ``update`` may have for :func:`plain_update` to accept it.
_UPDATE_KEYS = frozenset(("type", "path", "value", "chain", "tock", "node", "tick", "prev"))


def plain_update(m: dict, now_ms: int, max_ahead_ms: int) -> bool:
    """True if ``m`` is an ordinary, admissible ``update`` (the bulk of bus traffic).

    Only a shortcut: it checks what :func:`full_refusal` checks for such a message,
    in fewer steps (the receiving node pays for every replicated write), and says
    False for anything unusual, which :func:`full_refusal` then examines. So it
    accepts only what :func:`full_refusal` accepts (property-tested)."""
    node = m.get("node")
    tick = m.get("tick")
    tock = m.get("tock")
    chain = m.get("chain")
    path = m.get("path")
    if not (
        type(node) is str
        and 0 < len(node) <= 255
        and type(tick) is int
        and 0 <= tick < MAX_TICK
        and type(tock) is int
        and tock >= 0
        and (tock >> SHIFT) - now_ms <= max_ahead_ms
        and type(chain) is list
        and 0 < len(chain) <= 10_000
        and isinstance(path, tuple)
        and m.keys() <= _UPDATE_KEYS
    ):
        return False
    head = chain[0]
    if not (type(head) is list and len(head) == 2 and head[0] == node):
        return False
    t = head[1]
    if not (type(t) is int and t == tick):
        return False
    for lk in chain[1:] if len(chain) > 1 else ():
        if not (type(lk) is list and len(lk) == 2 and _name(lk[0]) and _is_tick(lk[1])):
            return False
    if "prev" in m and not _is_tick(m["prev"]):
        return False
    return None not in path  # (system paths start with None: refusal looks closer)


#: The keys an ``entry`` may have for :func:`plain_entry` to accept it.
_ENTRY_KEYS = frozenset(("type", "path", "value", "chain", "tock", "to"))


def plain_entry(m: dict, now_ms: int, max_ahead_ms: int) -> bool:
    """:func:`plain_update` for ``entry`` messages (a repair answer after an outage
    brings hundreds of thousands): True only if :func:`full_refusal` accepts it."""
    tock = m.get("tock")
    chain = m.get("chain")
    path = m.get("path")
    to = m.get("to", "-")
    if not (
        type(tock) is int
        and tock >= 0
        and (tock >> SHIFT) - now_ms <= max_ahead_ms
        and type(chain) is list
        and 0 < len(chain) <= 10_000
        and isinstance(path, tuple)
        and type(to) is str
        and 0 < len(to) <= 255
        and m.keys() <= _ENTRY_KEYS
    ):
        return False
    for lk in chain:
        if not (type(lk) is list and len(lk) == 2 and _name(lk[0]) and _is_tick(lk[1])):
            return False
    return None not in path  # (system paths start with None: refusal looks closer)


def refusal(m: Any, now_ms: int, max_ahead_ms: int) -> str | None:
    """Why message ``m`` from the bus must not reach the replica, or None if it may.
    The reason is one short phrase for the log and the counters."""
    if type(m) is dict:
        typ = m.get("type")
        if typ == "update":
            if plain_update(m, now_ms, max_ahead_ms):
                return None
        elif typ == "entry" and plain_entry(m, now_ms, max_ahead_ms):
            return None
    return full_refusal(m, now_ms, max_ahead_ms)


def full_refusal(m: Any, now_ms: int, max_ahead_ms: int) -> str | None:
    """:func:`refusal` without the shortcut for plain updates: every check, in order."""
    if not isinstance(m, dict):
        return "not a map"
    typ = m.get("type")
    if not isinstance(typ, str):
        return "no type"
    for key in ("node", "to", "origin"):
        if key in m and not _name(m[key]):
            return f"bad {key}"
    if "tick" in m and not _is_tick(m["tick"]):
        return "tick out of range"
    if "prev" in m and not _is_tick(m["prev"]):
        return "prev out of range"
    if "tock" in m:
        tock = m["tock"]
        if type(tock) is not int or tock < 0:
            return "bad tock"
        ahead = (tock >> SHIFT) - now_ms
        if ahead > max_ahead_ms:
            return f"clock {ahead / 1000:.0f} s ahead"
    if "chain" in m:
        p = _chain_problem(m["chain"])
        if p:
            return p
        if typ == "update" and (not m["chain"] or list(m["chain"][0]) != [m.get("node"), m.get("tick")]):
            return "update's node/tick is not its chain head"
    if "path" in m:
        path = m["path"]
        if not isinstance(path, tuple | list):
            return "bad path"
        if any(el is None for el in list(path)[1:]):
            return "None inside a path"
    if "ranges" in m:
        p = _ranges_problem(m["ranges"])
        if p:
            return p
    for key in ("seen",):
        if key in m:
            seen = m[key]
            if not isinstance(seen, dict):
                return f"bad {key}"
            for origin, ranges in seen.items():
                if not _name(origin):
                    return f"bad origin in {key}"
                p = _ranges_problem(ranges)
                if p:
                    return p
    if "horizon" in m:
        hz = m["horizon"]
        if typ == "superseded":
            if not _is_tick(hz):
                return "horizon out of range"
        elif not isinstance(hz, dict) or not all(_name(o) and _is_tick(t) for o, t in hz.items()):
            return "bad horizon"
        elif typ == "presence":
            # a node's purge horizon lies within what it has seen itself
            seen = m.get("seen") if isinstance(m.get("seen"), dict) else {}
            for o, t in hz.items():
                top = max((r[1] for r in seen.get(o, ())), default=0)
                if o == m.get("node") and _is_tick(m.get("tick")):
                    top = max(top, m["tick"])
                if t > top:
                    return f"horizon for {o} beyond what the node has seen"
    return None
