"""systemd integration: the unit file verifies cleanly, and READY=1 really arrives."""

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from distkv.testing.mosquitto import Mosquitto, find_mosquitto
from distkv.testing.process import ServerProcess, read_line

SYSTEMD = Path(__file__).parents[2] / "systemd"
UNITS = sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("src", UNITS, ids=[u.name for u in UNITS])
def test_unit_file_verifies(tmp_path, src):
    # verify resolves ExecStart; point it at an existing binary in a copy of the unit
    # (a template unit is verified as one of its instances; a timer with its service)
    units = [src] + ([src.with_suffix(".service")] if src.suffix == ".timer" else [])
    paths = []
    for u in units:
        unit = tmp_path / u.name.replace("@.", "@kitchen.")
        text = u.read_text().replace("/opt/distkv/bin/distkv-gateway", shutil.which("true"))
        unit.write_text(text.replace("/opt/distkv/bin/distkv", shutil.which("true")))
        paths.append(str(unit))
    res = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    out = "\n".join(
        line
        for line in (res.stdout + res.stderr).splitlines()
        # verify also checks the host's own units; only our unit counts here
        if "distkv" in line
    )
    assert res.returncode == 0 and out == "", out


def notifications(sock, until: str, timeout: float = 20) -> list[str]:
    """Every KEY=value line received until one equals ``until``."""
    sock.settimeout(timeout)
    lines: list[str] = []
    while until not in lines:
        lines.extend(sock.recv(4096).decode().splitlines())
    return lines


@pytest.mark.slow
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_ready_only_when_serving_with_status_and_watchdog(tmp_path):
    """A joining node says what it waits for (STATUS=), and READY=1 comes only once it
    serves current data; WATCHDOG=1 follows while it runs."""
    broker = Mosquitto()
    broker.start()
    path = str(tmp_path / "notify.sock")
    mqtt = {"server": {"mqtt": {"uri": broker.uri}}}
    first = ServerProcess(tmp_path, "sdone", cfg=mqtt)
    second = ServerProcess(tmp_path, "sdtwo", cfg=mqtt)
    second.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        try:
            second.launch()  # no -i, nobody to sync from yet
            status = notifications(s, "STATUS=waiting for peer (listening on "
                                   f"127.0.0.1:{second.port})")  # fmt: skip
            assert "READY=1" not in status
            assert first.start("-i", "x") == "Running."
            notifications(s, "READY=1")
            assert "WATCHDOG=1" in notifications(s, "WATCHDOG=1")
            assert not any(line.startswith("READY") for line in status)
            assert read_line(second.proc.stdout) == "Running.\n"
        finally:
            second.stop()
            first.stop()
            broker.close()


@pytest.mark.slow
def test_sd_notify_ready(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(20)
        srv = ServerProcess(tmp_path, "sd1")
        srv.env["NOTIFY_SOCKET"] = path
        try:
            assert srv.start("-i", "x") == "Running."
            msg = s.recv(4096).decode()
            assert "READY=1" in msg.splitlines()
            srv.stop()
            assert "STOPPING=1" in s.recv(4096).decode().splitlines()
        finally:
            srv.stop()
