"""A gateway process stops on SIGTERM (systemd) and Ctrl-C also while it is still
starting, e.g. while its broker is unreachable: it used to ignore both until killed."""

from __future__ import annotations

import signal
import subprocess

import pytest

from distkv.testing.process import ServerProcess, free_port, read_line

GATEWAY = (
    "exec distkv-gateway -C gateways.mqtt.uri=mqtt://127.0.0.1:{port} "
    "-C gateways.mqtt.topic=house mqtt"
)
INSTANCE = "exec distkv instance gateway-hall"


@pytest.fixture
def node(tmp_path):
    d = tmp_path / "instances"
    d.mkdir()
    srv = ServerProcess(tmp_path, "stopper", cfg={"instances": str(d)})
    assert srv.start("-i", "x") == "Running."
    try:
        yield srv, d
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("how", ["distkv-gateway", "distkv instance"])
def test_a_gateway_waiting_for_its_broker_stops_on_a_signal(node, sig, how):
    srv, d = node
    port = free_port()  # no broker there
    if how == "distkv instance":
        (d / "gateway-hall.cfg").write_text(
            f"gateway: mqtt\nsettings:\n  uri: mqtt://127.0.0.1:{port}\n  topic: house\n"
        )
        cmd = INSTANCE
    else:
        cmd = GATEWAY.format(port=port)
    # bash's own SIGINT handling stays out of it: exec replaces the shell
    with srv.spawn(cmd) as gw:
        line = read_line(gw.stderr)
        assert f"MQTT broker 127.0.0.1:{port} unreachable" in line, line
        gw.send_signal(sig)
        try:
            rc = gw.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{how} ignored {sig.name} while its broker was unreachable")
        assert rc == 0
        assert gw.stdout.read() == ""  # it never started: no "Running."
        assert "Traceback" not in gw.stderr.read()
