"""The pure parts of catching up after a broker outage: the bounded backlog of held
bus messages (distkv/server/replication/held.py) and when a gap is asked for
(RepairSchedule)."""

from hypothesis import given
from hypothesis import strategies as st

from distkv.core.replica.repair import RepairSchedule
from distkv.server.replication.held import HeldMessages, not_held, peers_back

TOPICS = ["update/a", "repair/b", "repair/c"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(TOPICS), st.integers(1, 300)),
        st.tuples(st.just("take"), st.none() | st.integers(0, 1000), st.none()),
    ),
    max_size=200,
)


def _split(chunks, msgs):
    """Check that ``chunks`` ((concatenated messages, count), ...) are the next
    messages of the iterator ``msgs``, whole; return how many there were."""
    n = 0
    for chunk, count in chunks:
        assert count >= 1
        assert chunk == b"".join(next(msgs) for _ in range(count))
        n += count
    return n


@given(st.integers(1, 2000), st.integers(1, 700), ops)
def test_held_messages_bounded_in_order_each_once(bound, chunk, script):
    """Whatever is added and taken: never more than the bound is held; every message
    added is either refused at once or comes out exactly once, whole, in order per
    topic, in chunks of at most ``chunk`` bytes unless one message is larger; a take
    hands out at least one chunk (if any) and not much more than asked; the ticks it
    reports held are exactly those of the held messages that carry one (own updates:
    increasing ticks, some refused)."""
    held = HeldMessages(bound, chunk)
    accepted: dict[str, list[bytes]] = {t: [] for t in TOPICS}
    streams = {t: iter(()) for t in TOPICS}
    taken = dict.fromkeys(TOPICS, 0)
    tick_of: dict[bytes, int] = {}
    n = 0

    def check(got):
        for topic, chunks in got:
            for c, count in chunks:
                assert len(c) <= chunk or count == 1
            taken[topic] += _split(chunks, streams[topic])

    for op, a, b in script:
        if op == "add":
            n += 1
            msg = n.to_bytes(4, "big") + b"x" * max(0, b - 4)
            before = held.bytes
            tick = n if a == "update/a" else None  # own updates carry their tick
            if held.add(a, msg, tick):
                accepted[a].append(msg)
                streams[a] = iter(accepted[a][taken[a] :])
                if tick is not None:
                    tick_of[msg] = tick
            else:
                assert before + len(msg) > bound and held.bytes == before
        else:
            had = len(held)
            got = held.take(a)
            if had:
                assert got
            if a is None:
                assert not held
            else:
                sizes = [len(c) for _, cs in got for c, _ in cs]
                assert sum(sizes[:-1]) < max(a, 1)  # only the last chunk may overshoot
            check(got)
            for t in TOPICS:
                streams[t] = iter(accepted[t][taken[t] :])
        assert 0 <= held.bytes <= bound
        want = {tick_of[m] for m in accepted["update/a"][taken["update/a"] :]}
        assert set(held.ticks()) == want
    check(held.take())
    assert taken == {t: len(accepted[t]) for t in TOPICS}
    assert held.bytes == 0 and not held


def test_held_messages_refuse_past_the_bound_and_accept_again_after_a_take():
    held = HeldMessages(100, chunk_bytes=50)
    assert held.add("update/a", b"x" * 60)
    assert not held.add("update/a", b"y" * 60)  # 120 > 100
    assert held.add("repair/b", b"z" * 20)
    assert held.add("repair/b", b"w" * 20)
    assert held.bytes == 100 and len(held) == 3
    assert held.take(1) == [("update/a", [(b"x" * 60, 1)])]
    assert held.add("update/a", b"y" * 60)
    assert held.take() == [
        ("repair/b", [(b"z" * 20 + b"w" * 20, 2)]),
        ("update/a", [(b"y" * 60, 1)]),
    ]


def test_repair_requests_for_held_ticks_are_not_answered():
    """A peer back before the backlog went out asks for ticks that are on their way:
    only the rest is answered (each answer of ticks the rings lack is a tree scan)."""
    held = HeldMessages(10_000, chunk_bytes=3)  # three of these per chunk
    for t in range(10, 20):
        held.add("update/me", b"u", t)
    held.add("repair/x", b"r")
    assert not_held([[1, 30]], held) == [[1, 10], [20, 30]]
    assert not_held([[12, 15]], held) == []
    held.take(3)  # ticks 10-12 went out
    assert not_held([[1, 30]], held) == [[1, 13], [20, 30]]
    held.take()
    assert not_held([[12, 15]], held) == [[12, 15]]


def _schedule() -> RepairSchedule:
    return RepairSchedule("me", delay_ms=300, backoff_ms=1000, max_backoff_ms=30_000,
                          max_ticks=2000)  # fmt: skip


def _ask(s: RepairSchedule, gap: tuple[int, int], now: int) -> list:
    return s.requests({"one": [gap]}, {}, lambda o, first, attempt, now: "one", now)


def test_a_gap_that_shrinks_is_not_asked_for_until_it_stops_shrinking():
    """After a broker outage the origin's backlog fills the gap in order: asking for
    those ticks meanwhile made the origin scan its tree for what was on its way, and
    us apply it twice. Asked for once the gap has not shrunk for repair_delay_ms."""
    s = _schedule()
    t = 1000
    hi = 200_000
    lo = 1
    assert _ask(s, (lo, hi), t) == []  # first seen: wait repair_delay_ms
    for _ in range(50):  # 5 s of a backlog arriving at 2,000 ticks per 100 ms
        t += 100
        lo += 2000
        assert _ask(s, (lo, hi), t) == []
    # the rest was lost: no progress any more; asked for after repair_delay_ms
    assert _ask(s, (lo, hi), t + 100) == []
    assert _ask(s, (lo, hi), t + 200) == []
    (req,) = _ask(s, (lo, hi), t + 300)
    assert req.ranges == [[lo, lo + 2000]]


def test_a_gap_that_keeps_shrinking_is_asked_for_after_max_backoff_at_the_latest():
    s = _schedule()
    assert _ask(s, (1, 1_000_000), 0) == []
    lo = 1
    for t in range(100, 30_000, 100):
        lo += 10
        assert _ask(s, (lo, 1_000_000), t) == []
    lo += 10
    (req,) = _ask(s, (lo, 1_000_000), 30_000)
    assert req.ranges == [[lo, lo + 2000]]


def test_repair_batches_follow_each_other_after_the_delay_not_the_backoff():
    s = _schedule()
    assert _ask(s, (1, 10_000), 0) == []
    (r1,) = _ask(s, (1, 10_000), 300)
    assert r1.ranges == [[1, 2001]]
    assert _ask(s, (2001, 10_000), 400) == []  # the answer arrived: progress
    (r2,) = _ask(s, (2001, 10_000), 700)  # next batch after the delay, not 1,300
    assert r2.ranges == [[2001, 4001]]
    # no answer: backoff (1 s after the request), then doubled
    assert _ask(s, (2001, 10_000), 1600) == []
    assert len(_ask(s, (2001, 10_000), 1700)) == 1
    assert _ask(s, (2001, 10_000), 3600) == []
    assert len(_ask(s, (2001, 10_000), 3700)) == 1


class _P:
    def __init__(self, online: bool, last_ms: int):
        self.online = online
        self.last_ms = last_ms


def test_peers_back_once_every_online_peer_was_heard_since_the_reconnect():
    assert peers_back([], 1000)  # a lone node waits for nobody
    assert not peers_back([_P(True, 999), _P(True, 1200)], 1000)
    assert peers_back([_P(True, 1000), _P(True, 1200)], 1000)
    assert peers_back([_P(False, 10), _P(True, 1200)], 1000)  # it said goodbye
