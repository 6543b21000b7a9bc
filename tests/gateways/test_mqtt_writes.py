"""The gateway's write pipeline (:class:`gateways.mqtt.writes.WriteQueue`): random
arrivals and completions of writes, several in flight. What a user would notice in the
tree: the values of one entry are never written out of order, never two at once, and
once every write is done the tree holds each entry's newest value."""

from hypothesis import given
from hypothesis import strategies as st

from gateways.mqtt.writes import WriteQueue

steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from("abc")),
        st.tuples(st.just("start"), st.just("")),
        st.tuples(st.just("finish"), st.integers(0, 7)),
    ),
    max_size=60,
)


@given(steps, st.integers(1, 4))
def test_per_entry_order_newest_wins(steps, workers):
    q: WriteQueue[int] = WriteQueue()
    counter = iter(range(10_000))
    newest: dict[str, int] = {}
    tree: dict[str, int] = {}
    in_flight: dict[str, int] = {}  # entry -> value being written (one worker each)

    def start_one() -> None:
        job = q.take()
        if job is not None:
            key, value = job
            assert key not in in_flight, "two writes of one entry at once"
            in_flight[key] = value

    for op, arg in steps:
        if op == "arrive":
            value = next(counter)
            newest[arg] = value
            q.add(arg, value)
        elif op == "start" and len(in_flight) < workers:
            start_one()
        elif op == "finish" and in_flight:
            key = sorted(in_flight)[arg % len(in_flight)]
            value = in_flight.pop(key)
            assert value > tree.get(key, -1), "an older value written after a newer one"
            tree[key] = value
            nxt = q.done(key)
            if nxt is not None:
                in_flight[key] = nxt  # the same worker goes on with the entry
    # drain: the workers finish everything
    while in_flight or len(q):
        if len(in_flight) < workers and len(q):
            before = len(in_flight)
            start_one()
            if len(in_flight) > before:
                continue
        key = sorted(in_flight)[0]
        value = in_flight.pop(key)
        assert value > tree.get(key, -1)
        tree[key] = value
        nxt = q.done(key)
        if nxt is not None:
            in_flight[key] = nxt
    assert tree == newest
    assert q.in_flight == 0


def test_a_newer_value_keeps_the_entrys_place():
    q: WriteQueue[int] = WriteQueue()
    assert q.add("a", 1) and q.add("b", 2)
    q.add("a", 3)  # replaces 1, still ahead of b
    assert q.take() == ("a", 3)
    assert q.add("a", 4) is False  # a is being written: the worker takes it next
    assert q.take() == ("b", 2)
    assert q.take() is None
    assert q.done("a") == 4 and q.done("a") is None and q.done("b") is None
    assert q.replaced == 1
