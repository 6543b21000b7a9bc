"""Counters for ``/metrics`` (Prometheus text format), and their rendering.

Counting happens on the request hot path, so it is a dict increment per request
(:meth:`Metrics.done`); every :data:`SAMPLE`-th request of a connection is also timed
(two clock reads, a bisect into the histogram): timing each one cost about 1 µs per
request on this project's loaded 2-core VM, a few per cent of a ``get``. Everything
that is a *state* (watchers,
peers, missing ticks, bus counters, conflicts) is read from the node when ``/metrics``
is scraped, through :meth:`Server.state` and the watch registry, so it costs nothing
between scrapes. The server builds one :class:`Metrics` and hands it to each session;
the web service renders it (:func:`render`). See docs/web.md for the metric names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any

#: Upper bounds (seconds) of the request latency histogram's buckets.
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

#: One request in this many (per connection) is timed for the latency histogram.
SAMPLE = 8

#: Label for actions a client named that the node does not have: the label set must
#: not grow with whatever strings clients send.
UNKNOWN = "_unknown"


class Metrics:
    """Request counts and latency histograms per action, plus a few event counters.

    ``actions``: the action names that get their own label (the server's command
    table); anything else is counted as :data:`UNKNOWN`."""

    __slots__ = ("_actions", "_gateways", "_hist", "_requests", "counters")

    def __init__(self, actions: Iterable[str]):
        self._actions = frozenset(actions)
        self._requests: dict[str, int] = {}
        # action -> [count per bucket ..., count above the last bound, sum of seconds]
        self._hist: dict[str, list] = {}
        #: plain event counters (name -> count), e.g. ``web_connections``
        self.counters: dict[str, int] = {}
        # gateway name -> its counters (gateways.counters.GatewayCounters)
        self._gateways: dict[str, Any] = {}

    def done(self, action: Any, t0: float) -> None:
        """A request of ``action`` was handled (the hot path: keep it tiny); ``t0``:
        ``perf_counter()`` when it started if it is timed, else 0."""
        r = self._requests
        n = r.get(action)
        if n is None:
            if action not in self._actions:
                action = UNKNOWN
            n = r.get(action, 0)
        r[action] = n + 1
        if t0:
            self.observe(action, perf_counter() - t0)

    def observe(self, action: Any, seconds: float) -> None:
        """One request of ``action`` took ``seconds``."""
        h = self._hist.get(action)
        if h is None:
            if action not in self._actions:
                action = UNKNOWN
            h = self._hist.get(action)
            if h is None:
                h = self._hist[action] = [0] * (len(BUCKETS) + 1) + [0.0]
        h[bisect_left(BUCKETS, seconds)] += 1
        h[-1] += seconds

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def add_gateway(self, name: str, counters: Any) -> None:
        """Show ``counters`` (a :class:`gateways.counters.GatewayCounters`: ``counts``
        and ``gauge(name)``, help texts in ``COUNTERS``/``GAUGES`` of its module) with
        ``gateway="NAME"``. The node's service wiring calls this for a gateway it runs
        (``server.services``); a restarted gateway's new counters replace the old."""
        self._gateways[name] = counters

    def gateways(self) -> dict[str, Any]:
        """Registered gateway counters, by gateway name."""
        return dict(self._gateways)

    def requests(self) -> dict[str, int]:
        """Requests handled so far, by action."""
        return dict(self._requests)

    def histograms(self) -> dict[str, list]:
        return {a: list(h) for a, h in self._hist.items()}


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(int(v))


class _Out:
    def __init__(self):
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def metric(
        self, name: str, kind: str, doc: str, samples: Iterable[tuple[Mapping, Any]]
    ) -> None:
        name = "distkv_" + name
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {doc}")
            self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def one(self, name: str, kind: str, doc: str, value: Any) -> None:
        self.metric(name, kind, doc, [({}, value)])


def _labels(labels: Mapping) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"


def _missing(ranges: Iterable) -> int:
    """Number of ticks in ``[[first, last], ...]`` gaps (inclusive ranges)."""
    n = 0
    for g in ranges:
        try:
            n += int(g[1]) - int(g[0]) + 1
        except (TypeError, ValueError, IndexError):
            continue
    return n


def _gateway_samples(out: _Out, gateways: Mapping[str, Any]) -> None:
    """``distkv_gateway_<counter>_total{gateway="NAME"}`` and ``distkv_gateway_<gauge>``
    for every gateway the node runs."""
    if not gateways:
        return
    from gateways.counters import COUNTERS, GAUGES

    names = sorted(gateways)
    for c, doc in COUNTERS.items():
        out.metric(
            f"gateway_{c}_total", "counter", "gateway: " + doc,
            (({"gateway": g}, gateways[g].counts.get(c, 0)) for g in names),
        )  # fmt: skip
    for c, doc in GAUGES.items():
        out.metric(
            f"gateway_{c}", "gauge", "gateway: " + doc,
            (({"gateway": g}, gateways[g].gauge(c)) for g in names),
        )  # fmt: skip


def render(metrics: Metrics, state: Mapping, watchers: int) -> str:
    """The Prometheus text exposition of ``metrics`` and a node ``state`` (the dict
    :meth:`Server.state` returns, which is also ``get_state``'s reply). Pure."""
    out = _Out()
    hists = metrics.histograms()
    out.metric(
        "requests_total", "counter", "client requests handled, by action",
        (({"action": a}, n) for a, n in sorted(metrics.requests().items())),
    )  # fmt: skip
    name = "request_duration_seconds"
    out.lines.append(
        f"# HELP distkv_{name} time to handle a request (reply queued), by action;"
        f" every {SAMPLE}th request of a connection is timed"
    )
    out.lines.append(f"# TYPE distkv_{name} histogram")
    for a, h in sorted(hists.items()):
        acc = 0
        for bound, n in zip(BUCKETS, h, strict=False):
            acc += n
            out.lines.append(f'distkv_{name}_bucket{{action="{_esc(a)}",le="{bound}"}} {acc}')
        acc += h[len(BUCKETS)]
        out.lines.append(f'distkv_{name}_bucket{{action="{_esc(a)}",le="+Inf"}} {acc}')
        out.lines.append(f'distkv_{name}_sum{{action="{_esc(a)}"}} {h[-1]!r}')
        out.lines.append(f'distkv_{name}_count{{action="{_esc(a)}"}} {acc}')
    for cname, n in sorted(metrics.counters.items()):
        out.one(cname + "_total", "counter", cname.replace("_", " "), n)
    _gateway_samples(out, metrics.gateways())
    out.one("watchers", "gauge", "live watches of all clients", watchers)
    out.one("clients", "gauge", "open client connections", state.get("clients", 0))
    out.one("entries", "gauge", "entries in the tree", state.get("entries", 0))
    out.one("tick", "counter", "this node's write counter", state.get("tick", 0))
    out.one("conflicts_total", "counter", "replication conflicts seen", state.get("conflicts", 0))
    rep = state.get("replication") or {}
    if rep:
        out.one("ready", "gauge", "1 when the node serves data requests", bool(rep.get("ready")))
        out.one("syncing", "gauge", "1 while the node syncs from a peer", bool(rep.get("syncing")))
        out.one("tombstones", "gauge", "deleted entries not purged yet", rep.get("tombstones", 0))
        ticks = rep.get("ticks") or {}
        out.metric(
            "replication_missing_ticks", "gauge",
            "writes of an origin node this node knows of but has not got",
            (({"origin": o}, _missing(t.get("missing") or ())) for o, t in ticks.items()),
        )  # fmt: skip
        lag = []
        for o, t in ticks.items():
            seen = t.get("seen") or []
            top = max((int(r[1]) for r in seen if len(r) > 1), default=0)
            lag.append(({"origin": o}, max(0, int(t.get("known") or 0) - top)))
        out.metric(
            "replication_lag_ticks",
            "gauge",
            "newest write of an origin node announced minus the newest one got",
            lag,
        )
        peers = rep.get("peers") or {}
        out.metric(
            "peer_live", "gauge", "1 while a peer's heartbeat is fresh",
            (({"peer": p}, bool(v.get("live"))) for p, v in peers.items()),
        )  # fmt: skip
        out.metric(
            "peer_last_seen_seconds", "gauge", "seconds since a peer's last heartbeat",
            (
                ({"peer": p}, float(v["last_seen_s"]))
                for p, v in peers.items() if v.get("last_seen_s") is not None
            ),
        )  # fmt: skip
        for k, v in sorted((rep.get("stats") or {}).items()):
            if isinstance(v, int):
                out.one(f"replication_{k}_total", "counter", f"replication: {k}", v)
        bus = rep.get("bus") or {}
        if bus:
            out.one(
                "bus_connected", "gauge", "1 while the bus is connected", bool(bus.get("connected"))
            )
            for k in ("connects", "disconnects", "connect_failures", "published", "received",
                      "dropped_offline", "dropped_full", "publish_errors"):  # fmt: skip
                if isinstance(bus.get(k), int):
                    out.one(f"bus_{k}_total", "counter", f"bus: {k.replace('_', ' ')}", bus[k])
    return "\n".join(out.lines) + "\n"
