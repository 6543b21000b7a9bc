"""systemd integration: the unit file verifies cleanly, and READY=1 really arrives."""

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from distkv.testing.process import ServerProcess

UNITS = sorted((Path(__file__).parents[2] / "systemd").glob("*.service"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("src", UNITS, ids=[u.name for u in UNITS])
def test_unit_file_verifies(tmp_path, src):
    # verify resolves ExecStart; point it at an existing binary in a copy of the unit
    # (a template unit is verified as one of its instances)
    unit = tmp_path / src.name.replace("@.", "@kitchen.")
    text = src.read_text().replace("/opt/distkv/bin/distkv-gateway", shutil.which("true"))
    unit.write_text(text.replace("/opt/distkv/bin/distkv", shutil.which("true")))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    out = "\n".join(
        line
        for line in (res.stdout + res.stderr).splitlines()
        # verify also checks the host's own units; only our unit counts here
        if "distkv" in line
    )
    assert res.returncode == 0 and out == "", out


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
