"""Gateway and runner instances (issue 12, item 2): ``INSTANCES/gateway-NAME.cfg`` and
``runner-NAME.cfg``, each with its own login, run as a process of its own (as
``distkv-gateway@NAME`` / ``distkv-runner@NAME`` start them) or inside the node
(``server.services``), from the same file. Real processes, a real mosquitto."""

import socket
import threading

import pytest

from distkv.testing.mosquitto import find_mosquitto, mosquitto_running
from distkv.testing.process import ServerProcess, fails, ok, read_line
from distkv.testing.wait import eventually_sync

pytestmark = pytest.mark.slow

ADMIN = "-a 'password name=admin password=pw-admin'"
# the job records who ran it and as which user
RECORD = 'await client.set(P("done") + (info["path"][-1],), [info["runner"], client.user])\n'
HOST = socket.gethostname()


def _instances(tmp_path, broker_uri: str) -> str:
    d = tmp_path / "instances"
    d.mkdir()
    (d / "runner-cellar.cfg").write_text(
        'auth: "password name=jobs password=pw-jobs"\ngroup: cellar\n'
    )
    (d / "gateway-kitchen.cfg").write_text(
        'auth: "password name=gw password=pw-gw"\ngateway: mqtt\nsettings:\n'
        f"  uri: {broker_uri}\n  topic: house\n  path: home\n"
    )
    return str(d)


def _node(tmp_path, instances: str, services=()) -> ServerProcess:
    """A node with password auth on (users admin, jobs, gw) and no connect.auth of its
    own: an instance that did not log in with its own user could do nothing."""
    cfg = {"instances": instances, "server": {"state_dir": str(tmp_path / "state")}}
    srv = ServerProcess(tmp_path, "inst", cfg=cfg)
    if not (tmp_path / "state").exists():
        assert srv.start("-i", "x") == "Running."
        for user in ("admin", "jobs", "gw"):
            ok(srv.run(f"distkv client auth -m password user add name={user} password=pw-{user}"))
        ok(srv.run("distkv client auth -m password init"))
        ok(srv.run(f"distkv client {ADMIN} code set rec", input=RECORD))
        srv.stop()
    if services:
        srv = ServerProcess(tmp_path, "inst", cfg={**cfg, "server": {
            **cfg["server"], "services": list(services)}})  # fmt: skip
    assert srv.start() == "Running."
    return srv


def _retained(uri: str, topic: str, timeout: float = 20) -> bytes | None:
    """The retained payload of ``topic`` on the broker (paho, blocking)."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(_c, _u, msg):
        got.append(msg.payload)
        done.set()

    c.on_message = on_message
    host, port = uri.removeprefix("mqtt://").rsplit(":", 1)
    c.connect(host, int(port))
    c.subscribe(topic)
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[-1] if got else None


def _job_ran(srv, job: str):
    res = srv.run(f"distkv client {ADMIN} data done.{job} get")
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


@pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")
def test_instances_run_as_processes_of_their_own_like_their_units(tmp_path):
    with mosquitto_running() as broker:
        srv = _node(tmp_path, _instances(tmp_path, broker.uri))
        try:
            # what the units run: distkv-runner@cellar, distkv-gateway@kitchen
            with srv.spawn("exec distkv instance runner-cellar") as runner, srv.spawn(
                "exec distkv instance gateway-kitchen"
            ) as gw:
                assert read_line(runner.stdout).strip() == "Running."
                assert read_line(gw.stdout).strip() == "Running."
                ok(srv.run(f"distkv client {ADMIN} run -g cellar set -c rec -t 0 a.one"))
                out = eventually_sync(lambda: _job_ran(srv, "one"), timeout=30, what="the job")
                assert out.split() == ["-", f"{HOST}-cellar", "-", "jobs"]  # its own user
                # the gateway logged in as gw and is named after its instance
                assert _retained(broker.uri, "distkv/gateway/kitchen/status") == b"online"
                ok(srv.run(f"distkv client {ADMIN} data home.lamp set -v : on"))
                assert _retained(broker.uri, "house/lamp") is not None
        finally:
            srv.stop()


@pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")
def test_the_same_instance_files_run_inside_the_node(tmp_path):
    with mosquitto_running() as broker:
        inst = _instances(tmp_path, broker.uri)
        _node(tmp_path, inst).stop()  # users and code
        srv = _node(tmp_path, inst, services=["runner-cellar", "gateway-kitchen"])
        try:
            ok(srv.run(f"distkv client {ADMIN} run -g cellar set -c rec -t 0 a.two"))
            out = eventually_sync(lambda: _job_ran(srv, "two"), timeout=30, what="the job")
            assert out.split() == ["-", f"{HOST}-cellar", "-", "jobs"]
            assert _retained(broker.uri, "distkv/gateway/kitchen/status") == b"online"
            ok(srv.run(f"distkv client {ADMIN} data home.lamp set -v : off"))
            assert _retained(broker.uri, "house/lamp") is not None
            assert srv.proc.poll() is None  # one process
        finally:
            srv.stop()


def test_a_typo_in_an_instance_file_is_one_line_naming_the_file_and_key(tmp_path):
    d = tmp_path / "instances"
    d.mkdir()
    bad = d / "gateway-hall.cfg"
    bad.write_text("gateway: mqtt\nsetings:\n  topic: house\n")
    srv = ServerProcess(tmp_path, "typo", cfg={"instances": str(d)})
    fails(
        srv.run("distkv instance gateway-hall"),
        f"ConfigError: {bad}: unknown setting setings (did you mean settings?)",
    )
    bad.write_text("gateway: mqtt\nsettings:\n  topic: house\n  qos: 2\n")
    res = srv.run("distkv instance --check gateway-hall")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"ConfigError: {bad}: settings.qos: 2 is not one of 0, 1")
    (d / "runner-x.cfg").write_text("gateway: mqtt\n")
    fails(srv.run("distkv instance runner-x"), f"ConfigError: {d}/runner-x.cfg: gateway: "
          "a runner does not take it")  # fmt: skip
    fails(
        srv.run("distkv instance gateway-nowhere"),
        f"ConfigError: no instance file {d}/gateway-nowhere.cfg (write one with: "
        "distkv setup gateway nowhere ...)",
    )
    # the node refuses to start with it, in the same line
    node = ServerProcess(tmp_path, "typo2", cfg={"instances": str(d),
                                                 "server": {"services": ["gateway-hall"]}})  # fmt: skip
    res = node.run("distkv server -i x typo2")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"ConfigError: {bad}: settings.qos: 2 is not one of 0, 1"
    ]
