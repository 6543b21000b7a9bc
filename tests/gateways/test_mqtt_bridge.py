"""The MQTT gateway's decisions, without I/O: mapping, and never a loop."""

from hypothesis import given
from hypothesis import strategies as st

from distkv.util import NotGiven
from gateways.mqtt.bridge import (
    Bridge,
    payload_to_value,
    rel_to_topic,
    topic_to_rel,
    value_to_payload,
)


def started(**tree):
    b = Bridge()
    for k, v in tree.items():
        b.tree_event((k,), v, ("n1", 1))
    b.initial()
    return b


def test_payloads_and_values():
    assert payload_to_value(b"ON") == "ON"
    assert payload_to_value(b"\xff\x00") == b"\xff\x00"
    assert payload_to_value(b"") is NotGiven
    assert value_to_payload("21.5") == b"21.5"
    assert value_to_payload(b"\x01") == b"\x01"
    assert value_to_payload(True) == b"true"
    assert value_to_payload({"a": [1, 2.5]}) == b'{"a": [1, 2.5]}'
    assert value_to_payload(NotGiven) == b""


def test_paths_without_a_topic_are_not_published():
    assert rel_to_topic(("kitchen", 1)) == "kitchen/1"
    for rel in [(), ("a/b",), ("+",), ("a", "#"), ("",)]:
        assert rel_to_topic(rel) is None
    b = started()
    assert b.tree_event(("a/b",), 1, ("n1", 5)) == []


@given(st.lists(st.text(st.characters(blacklist_characters="/+#\0"), min_size=1), min_size=1))
def test_topic_round_trip(levels):
    rel = tuple(levels)
    assert topic_to_rel(rel_to_topic(rel)) == rel


def test_initial_state_is_published_once_then_changes():
    b = Bridge()
    assert b.tree_event(("lamp",), "ON", ("n1", 1)) == []  # before uptodate: collected
    assert b.initial() == [("lamp", b"ON")]
    assert b.tree_event(("lamp",), "OFF", ("n1", 2)) == [("lamp", b"OFF")]
    assert b.tree_event(("lamp",), NotGiven, ("n1", 3)) == [("lamp", b"")]  # clears retained


def test_own_writes_are_not_published_back_even_if_the_event_comes_first():
    b = started()
    rel, value = b.mqtt_message("lamp", b"ON", retained=False)
    assert (rel, value) == (("lamp",), "ON")
    b.begin_write(rel)
    # the watch event of our write arrives before set() returned: held
    assert b.tree_event(rel, "ON", ("n1", 10)) == []
    # another writer's change, also held, is published once ours is known
    assert b.tree_event(rel, "OFF", ("n1", 11)) == []
    assert b.end_write(rel, ("n1", 10)) == [("lamp", b"OFF")]
    # and the broker's echo of that publication is not written again
    assert b.mqtt_message("lamp", b"OFF", retained=False) is None
    # a normal order: the write returns first, then its event
    rel, _ = b.mqtt_message("lamp", b"ON", retained=False)
    b.begin_write(rel)
    assert b.end_write(rel, ("n1", 12)) == []
    assert b.tree_event(rel, "ON", ("n1", 12)) == []


def test_a_codec_that_normalises_is_published_once():
    b = started()
    rel, _ = b.mqtt_message("lamp", b"on", retained=False)
    b.begin_write(rel)
    assert b.end_write(rel, ("n1", 20)) == []
    assert b.tree_event(rel, "ON", ("n1", 20)) == []  # ours, whatever the codec made of it


def test_the_tree_wins_over_retained_replays():
    b = started(lamp="ON")
    assert b.mqtt_message("lamp", b"OFF", retained=True) is None
    assert b.mqtt_message("other", b"x", retained=True) == (("other",), "x")
    assert b.mqtt_message("lamp", b"OFF", retained=False) == (("lamp",), "OFF")


def test_empty_payload_deletes_only_what_exists():
    b = started(lamp="ON")
    assert b.mqtt_message("lamp", b"", retained=False) == (("lamp",), NotGiven)
    assert b.mqtt_message("nothing", b"", retained=False) is None


def test_failed_write_releases_held_events():
    b = started()
    rel, _ = b.mqtt_message("lamp", b"ON", retained=False)
    b.begin_write(rel)
    assert b.tree_event(rel, "OFF", ("n1", 30)) == []
    assert b.end_write(rel, None) == [("lamp", b"OFF")]


def test_echo_memory_is_bounded():
    """Only the last ``echo_memory`` own writes are remembered: an event carrying an
    older link is published like anybody else's change (memory stays bounded)."""
    b = Bridge(echo_memory=3)
    b.initial()
    for t in range(10):
        b.begin_write(("x",))
        b.end_write(("x",), ("n1", t))
    for t in (9, 8, 7):
        assert b.tree_event(("x",), f"v{t}", ("n1", t)) == [], "a remembered write"
    for t in range(7):
        assert b.tree_event(("x",), f"v{t}", ("n1", t)) == [("x", f"v{t}".encode())]
