"""`distkv setup node` stages a complete appliance install (CI checks it into a temp
root and verifies the units with systemd-analyze)."""

import shutil
import subprocess
import sys

from distkv import config

UNITS = "etc/systemd/system"


def setup(*args, check=True):
    res = subprocess.run(
        [sys.executable, "-m", "distkv", "setup", "node", *args], capture_output=True, text=True
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_a_staged_install_is_complete_and_verifies(tmp_path):
    out = setup("--root", str(tmp_path), "--broker", "mqtt://pi.local:1883", "--new-key",
                "--init", "Home").stdout  # fmt: skip
    cfg_file = tmp_path / "etc/distkv/distkv.cfg"
    cfg = config.load([str(cfg_file)])  # the schema accepts what setup wrote
    assert cfg["server"]["mqtt"]["uri"] == "mqtt://pi.local:1883"
    key = cfg["server"]["network_key"]
    assert len(key) == 48 and key in out  # printed for the other nodes
    assert (tmp_path / "usr/lib/sysusers.d/distkv.conf").read_text().startswith("#")
    dropin = (tmp_path / UNITS / "distkv.service.d/init.conf").read_text()
    assert "server -i Home --state-dir /var/lib/distkv %H" in dropin
    units = sorted((tmp_path / UNITS).glob("distkv*.*"))
    assert {u.name for u in units} >= {"distkv.service", "distkv-backup.timer"}
    if shutil.which("systemd-analyze"):
        for u in units:
            if u.is_dir():
                continue
            text = u.read_text().replace("%i", "kitchen")
            copy = tmp_path / "verify" / u.name.replace("@.", "@kitchen.")
            copy.parent.mkdir(exist_ok=True)
            copy.write_text(text)
        paths = [str(p) for p in (tmp_path / "verify").iterdir()]
        res = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
        noise = [ln for ln in (res.stdout + res.stderr).splitlines() if "distkv" in ln]
        assert res.returncode == 0 and noise == [], noise


def test_setup_keeps_an_existing_config_and_says_what_is_wrong(tmp_path):
    setup("--root", str(tmp_path))
    cfg_file = tmp_path / "etc/distkv/distkv.cfg"
    assert "A lone node" in cfg_file.read_text()
    cfg_file.write_text("server: {root: mine}\n")
    setup("--root", str(tmp_path), "--broker", "mqtt://other:1883")
    assert cfg_file.read_text() == "server: {root: mine}\n"  # never overwritten
    res = setup("--root", str(tmp_path), "--broker", "http://x", check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == "ConfigError: --broker must be mqtt://HOST[:PORT], not 'http://x'"
