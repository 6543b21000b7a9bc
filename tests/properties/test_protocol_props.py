"""The two protocol objects driven against each other, no sockets (hypothesis).

Bytes from one side reach the other in arbitrary chunks; the invariants are the
protocol's promises: every request gets its reply, in order; stream items arrive in
order and complete; a consumer never holds more than the credit it granted; a consumer
that stops reading pauses only its own stream; live events that pile up end only
their own stream, with StreamOverflowError, and bounded memory.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from distkv.exceptions import NoDataError, StreamOverflowError
from distkv.wire.protocol import (
    DEFAULT_CREDIT,
    ClientProtocol,
    CreditGranted,
    Reply,
    Request,
    ServerProtocol,
    StreamActivity,
    StreamEnded,
)


class Pair:
    """A client and a server protocol object with a chunking 'wire' in between."""

    def __init__(self, chunks, credit=DEFAULT_CREDIT, event_limit=4 << 20):
        self.client = ClientProtocol(credit=credit)
        self.server = ServerProtocol(event_limit=event_limit)
        self.chunks = chunks  # an iterator of chunk sizes
        self.server.send({"seq": 0, "node": "n"})
        self.replies: list[Reply] = []
        self.requests: list[Request] = []
        self.granted: list[int] = []

    def _split(self, data: bytes):
        i = 0
        while i < len(data):
            n = max(1, next(self.chunks))
            yield data[i : i + n]
            i += n

    def to_server(self) -> None:
        for part in self._split(self.client.data_to_send()):
            for ev in self.server.receive_data(part):
                if isinstance(ev, Request):
                    self.requests.append(ev)
                elif isinstance(ev, CreditGranted):
                    self.granted.append(ev.seq)

    def to_client(self) -> list:
        events = []
        for part in self._split(self.server.data_to_send()):
            events.extend(self.client.receive_data(part))
        self.replies.extend(e for e in events if isinstance(e, Reply))
        return events


def chunk_sizes(draw_list):
    return itertools.cycle(draw_list)


sizes = st.lists(st.integers(1, 2000), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(sizes, st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=30), st.none()), max_size=40))
def test_every_request_gets_its_reply_in_order(chunks, values):
    p = Pair(chunk_sizes(chunks))
    seqs = [p.client.send_request("echo", {"value": v}) for v in values]
    p.to_server()
    assert [r.msg["value"] for r in p.requests] == values
    for r in p.requests:
        if r.msg["value"] is None:
            p.server.error(r.seq, NoDataError("nothing"))
        else:
            p.server.reply(r.seq, {"value": r.msg["value"]})
    p.to_client()
    assert p.client.greeting == {"seq": 0, "node": "n"}
    assert [r.seq for r in p.replies] == seqs
    for r, v in zip(p.replies, values, strict=True):
        if v is None:
            assert r.msg["error"] == NoDataError.code
        else:
            assert r.msg["value"] == v


@settings(max_examples=60, deadline=None)
@given(
    sizes,
    st.integers(0, 300),
    st.integers(2, 64),
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_bulk_stream_is_paced_by_credit_and_complete(chunks, n_items, credit, takes):
    """A bulk producer sends only while it has credit; the consumer takes items in
    arbitrary amounts and requests in between are answered at once."""
    p = Pair(chunk_sizes(chunks), credit=credit)
    seq = p.client.start_stream("get_tree", {})
    p.to_server()
    (req,) = p.requests
    p.server.stream_start(seq, req.msg["credit"])
    produced = 0
    got: list[int] = []
    takes_iter = itertools.cycle(takes)
    ended = False
    for _round in range(10_000):
        while produced < n_items and p.server.can_send(seq):
            p.server.stream_item(seq, {"seq": seq, "i": produced})
            produced += 1
        if produced == n_items:
            p.server.stream_end(seq)
            produced += 1  # only once
        p.to_client()
        buffered = p.client.buffered(seq)
        assert buffered <= credit, "the server sent more than the credit"
        # a request in the middle of the stream is answered, whatever the stream does
        rseq = p.client.send_request("ping", {})
        p.to_server()
        ping = p.requests.pop()
        assert ping.action == "ping"
        p.server.reply(ping.seq, {})
        p.to_client()
        assert p.replies[-1].seq == rseq
        for _ in range(next(takes_iter)):
            try:
                item = p.client.next_item(seq)
            except StreamEnded:
                ended = True
                break
            if item is None:
                break
            got.append(item["i"])
        if ended:
            break
        p.to_server()
    assert ended
    assert got == list(range(n_items))


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(1, 400), st.integers(2, 32), st.integers(200, 5000))
def test_live_events_pause_then_overflow_only_their_stream(chunks, n_events, credit, limit):
    p = Pair(chunk_sizes(chunks), credit=credit, event_limit=limit)
    slow = p.client.start_stream("watch", {})
    fast = p.client.start_stream("watch", {})
    p.to_server()
    for r in p.requests:
        p.server.stream_start(r.seq, r.msg["credit"])
    overflowed = False
    fast_got = []
    for i in range(n_events):
        for seq in (slow, fast):
            ev = p.server.stream_event(seq, {"seq": seq, "i": i})
            if ev is not None:
                assert seq == slow
                overflowed = True
        assert p.server.pending_bytes(slow) <= limit
        p.to_client()
        while (item := p.client.next_item(fast)) is not None:
            fast_got.append(item["i"])
        p.to_server()
    assert fast_got == list(range(n_events)), "the fast watcher lost events"
    slow_got = []
    try:
        while (item := p.client.next_item(slow)) is not None:
            slow_got.append(item["i"])
            p.to_server()
            p.to_client()
    except StreamOverflowError:
        assert overflowed
    else:
        assert not overflowed
        assert slow_got == list(range(n_events))
    assert slow_got == list(range(len(slow_got))), "events out of order or missing"


@settings(max_examples=40, deadline=None)
@given(sizes, st.integers(0, 300), st.integers(0, 50), st.integers(2, 16))
def test_backlog_precedes_live_events_and_never_overflows(chunks, n_dump, n_live, credit):
    """A watch's initial dump is held behind credit like events, in order, and is
    never counted as an overflow however large."""
    p = Pair(chunk_sizes(chunks), credit=credit, event_limit=200)
    seq = p.client.start_stream("watch", {})
    p.to_server()
    p.server.stream_start(seq, p.requests[0].msg["credit"])
    for i in range(n_dump):
        p.server.stream_backlog(seq, {"seq": seq, "i": i})
    p.server.stream_backlog(seq, {"seq": seq, "state": "uptodate"})
    got = []
    for i in range(n_live):
        p.server.stream_event(seq, {"seq": seq, "i": n_dump + i})
    overflow = False
    try:
        for _ in range(10_000):
            p.to_client()
            item = p.client.next_item(seq)
            p.to_server()
            if item is None:
                if len(got) == n_dump + 1 + n_live:
                    break
                continue
            got.append(item.get("i", "uptodate"))
    except StreamOverflowError:
        overflow = True
    dump = list(range(n_dump)) + ["uptodate"]
    assert got[: len(dump)] == dump[: len(got)]
    if not overflow:
        assert got == dump + list(range(n_dump, n_dump + n_live))


def test_activity_events_name_the_stream():
    p = Pair(chunk_sizes([1000]))
    seq = p.client.start_stream("watch", {})
    p.to_server()
    p.server.stream_start(seq, p.requests[0].msg["credit"])
    p.server.stream_event(seq, {"seq": seq, "x": 1})
    evs = p.to_client()
    assert StreamActivity(seq) in evs
