"""Property test of the gateway's entity decisions (:class:`gateways.mqtt.entity.Devices`),
without sockets: a model tree and a model of the trio shell drive it through random
interleavings of device messages, user changes of ``desired``, the gateway's own writes
coming back as watch events, Home Assistant commands, restarts/config reloads and
retained messages on command topics.

What a user would notice, checked after every step:

* a device command goes out only for a change of ``desired`` somebody asked for (a user
  in the tree, or Home Assistant on the gateway's command topic), at most once per change,
  and never retained;
* a restart or a config reload publishes no command;
* ``state`` in the tree is what the device last said, and nothing else writes it;
* once every watch event is delivered, every change delivered to the running gateway has
  been sent, and the device got the newest commanded value last.

Commandable entities use the ``int`` codec and every requested value is unique, so each
command published can be traced to exactly one change by its payload.

Not covered here (needs the shell): the order of a held watch event and a state write
the shell has not finished, reconnects of the watch itself, and availability topics.
"""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from distkv.util import NotGiven
from gateways.mqtt.codec import get_codec
from gateways.mqtt.entity import Devices, EntitySpec, Problem, Publish, Write

GW_TOPIC = "distkv/gw"
INT = get_codec("int")

SPECS = [
    # Tasmota-style relay with a numeric value, also controllable from Home Assistant
    EntitySpec(
        name="a",
        path=("home", "a"),
        codec=INT,
        state="stat/a/VAL",
        command="cmnd/a/VAL",
        component="sensor",
        discovery=True,
    ),
    # zigbee2mqtt-style: JSON state field, JSON command with the same field
    EntitySpec(
        name="b",
        path=("home", "b"),
        codec=INT,
        state="z2m/b",
        field="level",
        command="z2m/b/set",
        command_field="level",
    ),
    # a sensor: state only
    EntitySpec(
        name="c",
        path=("home", "c"),
        codec=get_codec("float"),
        state="tele/c/SENSOR",
        field="AM2301.Temperature",
    ),
]
BY_NAME = {s.name: s for s in SPECS}
COMMANDED = [s for s in SPECS if s.command]
CMD_TOPICS = {s.command: s for s in COMMANDED}
DESIRED = {s.desired_path: s for s in COMMANDED}
STATE_PATHS = {s.state_path: s for s in SPECS}


def new_devices() -> Devices:
    return Devices(SPECS, gateway_topic=GW_TOPIC, discovery="homeassistant")


def command_value(spec: EntitySpec, payload: bytes) -> int:
    if spec.command_field:
        return json.loads(payload)[spec.command_field]
    return int(payload)


class GatewayModel(RuleBasedStateMachine):
    """The tree (path -> (value, link)), the watch streams of ``desired`` entries and the
    broker side, around one running :class:`Devices` at a time."""

    # Home Assistant may ask while user changes of the same entry are still on their way
    # to the gateway, and watch events may arrive while the gateway's own write of that
    # entry is in flight. Off here: see RacingModel below (a known bug).
    races = False

    def __init__(self) -> None:
        super().__init__()
        self.ticks = itertools.count(1)
        self.values = itertools.count(1000)  # every requested value is unique
        self.tree: dict[tuple, tuple] = {}
        self.state_writes_ok: dict[tuple, object] = {}  # state path -> last device value
        self.pending: dict[tuple, list] = {p: [] for p in DESIRED}  # undelivered events
        self.delivered: dict[tuple, tuple | None] = {p: None for p in DESIRED}
        self.dev = new_devices()
        self.restarting = False
        # bookkeeping of requests: value -> who asked; which values were sent
        self.requested: dict[int, str] = {}
        self.due: set[int] = set()  # delivered to the running gateway: must be sent
        self.gw_tock: dict[tuple, int] = {}  # path -> tock of this run's own last write
        self.sent: dict[int, int] = {}  # value -> how often commanded
        self.last_sent: dict[str, int] = {}  # command topic -> last value sent

    # ------------------------------------------------------------ the shell, modelled

    def tree_set(self, path: tuple, value, node: str) -> tuple:
        """Apply a write; its link and tock. Tocks grow in the order writes reach the
        tree (a write that replaces another has the later tock), as the node's clock
        gives them; the shell hands them to ``end_write`` and ``desired_event``."""
        tick = next(self.ticks)
        link, tock = (node, tick), 1000 * tick
        self.tree[path] = (value, link, tock)
        if path in self.pending:
            self.pending[path].append((value, link, tock))
        return link, tock

    def run(self, actions: list, data, *, restart: bool = False) -> None:
        for a in actions:
            if isinstance(a, Publish):
                self.published(a, restart=restart)
            elif isinstance(a, Write):
                assert a.path not in STATE_PATHS or a.value == self.state_writes_ok.get(a.path), (
                    f"state {a.path} written with {a.value!r}, not from the device"
                )
                self.dev.begin_write(a.path)
                link, tock = self.tree_set(a.path, a.value, "gw")
                self.gw_tock[a.path] = tock
                # the watch may deliver events (ours included) before set returns
                if (
                    self.races
                    and a.path in self.pending
                    and data.draw(st.booleans(), label="events in write")
                ):
                    self.deliver_all(a.path, data)
                self.run(self.dev.end_write(a.path, link, tock=tock, command=a.command), data)
            else:
                assert isinstance(a, Problem)

    def published(self, p: Publish, *, restart: bool) -> None:
        spec = CMD_TOPICS.get(p.topic)
        if spec is None:
            return  # Home Assistant state/discovery topics
        assert not restart, f"restart/reload published {p}"
        assert not p.retain, f"command published retained: {p}"
        value = command_value(spec, p.payload)
        assert value in self.requested, f"command {value} nobody asked for"
        assert self.sent.get(value, 0) == 0, f"command {value} sent twice"
        self.sent[value] = 1
        self.due.discard(value)
        self.last_sent[p.topic] = value

    def is_current(self, path: tuple, tock: int) -> bool:
        """A change not replaced by a later write of the running gateway itself (a
        Home Assistant command): such a change is superseded, not due."""
        return tock > self.gw_tock.get(path, -1)

    def deliver(self, path: tuple, data) -> None:
        value, link, tock = self.pending[path].pop(0)
        self.delivered[path] = (value, link, tock)
        if link[0] != "gw" and value is not NotGiven and self.is_current(path, tock):
            self.due.add(value)
        self.run(self.dev.desired_event(path, value, link, tock=tock), data)

    def deliver_all(self, path: tuple, data) -> None:
        while self.pending[path]:
            self.deliver(path, data)

    # ------------------------------------------------------------ rules

    @rule(
        spec=st.sampled_from(SPECS),
        value=st.integers(-3, 3),
        retained=st.booleans(),
        garbage=st.booleans(),
        data=st.data(),
    )
    def device_reports(self, spec, value, retained, garbage, data):
        """(a) The device publishes its state (retained or not; sometimes unreadable)."""
        if garbage:
            payload = b"{not json" if spec.field else b"nonsense"
        elif spec.name == "c":
            payload = json.dumps({"AM2301": {"Temperature": value / 2}}).encode()
        elif spec.field:
            payload = json.dumps({"level": value, "linkquality": 80}).encode()
        else:
            payload = str(value).encode()
        if not garbage:
            self.state_writes_ok[spec.state_path] = spec.codec.decode(
                value / 2 if spec.name == "c" else value
            )
        self.run(self.dev.message(spec.state, payload, retained), data)

    @rule(spec=st.sampled_from(COMMANDED), node=st.sampled_from(["n1", "n2"]))
    def user_changes_desired(self, spec, node):
        """(b) A user (on any node) sets ``desired``; its watch event comes later."""
        value = next(self.values)
        self.requested[value] = "user"
        self.tree_set(spec.desired_path, value, node)

    @rule(spec=st.sampled_from(COMMANDED))
    def user_deletes_desired(self, spec):
        """A deletion is not a request to send anything."""
        if spec.desired_path in self.tree:
            self.tree_set(spec.desired_path, NotGiven, "n1")

    @precondition(lambda self: any(self.pending.values()))
    @rule(spec=st.sampled_from(COMMANDED), data=st.data())
    def watch_delivers(self, spec, data):
        """(c) The next watch event of one entry (a user's change or the gateway's own
        write, with the (node, tick) its set returned)."""
        if self.pending[spec.desired_path]:
            self.deliver(spec.desired_path, data)

    @rule(spec=st.sampled_from(COMMANDED), data=st.data())
    def watch_repeats(self, spec, data):
        """The last event again (a watch restarted after a reconnect): not a new change."""
        last = self.delivered[spec.desired_path]
        if last is not None and not self.pending[spec.desired_path]:
            value, link, tock = last
            self.run(self.dev.desired_event(spec.desired_path, value, link, tock=tock), data)

    @precondition(lambda self: self.races or not self.pending[BY_NAME["a"].desired_path])
    @rule(retained=st.booleans(), data=st.data())
    def home_assistant_commands(self, retained, data):
        """Home Assistant asks on the gateway's command topic; a retained one is stale."""
        value = next(self.values)
        if not retained:
            self.requested[value] = "ha"
            self.due.add(value)  # the gateway writes it and must send it
        self.run(self.dev.message(f"{GW_TOPIC}/a/set", str(value).encode(), retained), data)

    @rule(spec=st.sampled_from(COMMANDED), retained=st.booleans(), data=st.data())
    def someone_publishes_on_command_topic(self, spec, retained, data):
        """(e) A (retained) message on a device's command topic, e.g. a stale retained
        command of an older setup: not something the gateway acts on."""
        before = dict(self.tree)
        out = self.dev.message(spec.command, b"1", retained)
        assert out == [], out
        self.run(out, data)
        assert self.tree == before

    @rule(data=st.data())
    def restart(self, data):
        """(d) A restart or a config reload: a new instance, fed the current tree as the
        watch's initial values. Events the old watch had not delivered are gone."""
        self.dev = new_devices()
        self.gw_tock.clear()
        for path in DESIRED:
            self.pending[path] = []
            self.delivered[path] = None
            if path in self.tree:
                value, link, tock = self.tree[path]
                self.delivered[path] = (value, link, tock)
                self.run(
                    self.dev.desired_event(path, value, link, initial=True, tock=tock),
                    data,
                    restart=True,
                )
        # changes the old gateway never saw are not sent later (desired != state shows it)
        self.due.clear()

    # ------------------------------------------------------------ invariants

    @invariant()
    def state_follows_device(self):
        for path in STATE_PATHS:
            if path in self.tree:
                assert self.tree[path][0] == self.state_writes_ok[path]

    @invariant()
    def quiet_gateway_is_up_to_date(self):
        if any(self.pending.values()):
            return
        assert not self.due, f"changes delivered but never sent: {sorted(self.due)}"
        for path, spec in DESIRED.items():
            value = self.tree.get(path, (NotGiven,))[0]
            if value is not NotGiven and self.sent.get(value):
                assert self.last_sent[spec.command] == value, (
                    f"device got {self.last_sent[spec.command]} last, desired is {value}"
                )


GatewayModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_entity_decisions = GatewayModel.TestCase


class RacingModel(GatewayModel):
    """Home Assistant asks while a user's change of the same entry is still on its way
    to the gateway (both are real: HA and a runner on another node).

    The race this found (fixed, by tock): the user's older change arrives after the
    gateway's own write and was sent after the HA command, so the device ended up with
    the older value while ``desired`` held the newer one. Same when the events are held
    during the write (``begin_write``/``end_write`` replays them after the gateway's own
    link).
    """

    races = True

    @rule(node=st.sampled_from(["n1", "n2"]), data=st.data())
    def user_and_home_assistant_at_once(self, node, data):
        """A user's change is still on its way when Home Assistant asks: the race, made
        frequent enough for a short run to find it."""
        self.user_changes_desired(BY_NAME["a"], node)
        self.home_assistant_commands(False, data)


RacingModel.TestCase.settings = settings(
    GatewayModel.TestCase.settings, max_examples=150, stateful_step_count=20
)
# The model feeds tocks as the shell does (end_write, desired_event): a user's change
# that the gateway's own later write replaced is superseded, not sent after it.
test_entity_decisions_racing = RacingModel.TestCase


def test_older_user_change_is_not_sent_after_home_assistant_command():
    """The shortest case RacingModel finds: a user sets ``desired`` to 5 on another node,
    Home Assistant asks for 7 before the watch delivered the 5; the tree ends at 7, the
    device must not be left at 5."""
    spec = BY_NAME["a"]
    dev = new_devices()
    (write,) = dev.message(f"{GW_TOPIC}/a/set", b"7", False)
    dev.begin_write(write.path)
    # tocks as the node gives them: the user's 5 was applied before our 7
    ends = dev.end_write(write.path, ("gw", 2), tock=200, command=write.command)
    sent = [p.payload for p in ends if isinstance(p, Publish)]
    sent += [p.payload for p in dev.desired_event(spec.desired_path, 5, ("n2", 1), tock=100)]
    sent += [p.payload for p in dev.desired_event(spec.desired_path, 7, ("gw", 2), tock=200)]
    assert sent == [b"7"]
    # a user's change after ours (a later tock) is a request like any other
    sent = [p.payload for p in dev.desired_event(spec.desired_path, 3, ("n2", 2), tock=300)]
    assert sent == [b"3"]
