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


def _verify(paths):
    res = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    noise = [ln for ln in (res.stdout + res.stderr).splitlines() if "distkv" in ln]
    assert res.returncode == 0 and noise == [], noise


def _instance(*args, root):
    return subprocess.run(
        [sys.executable, "-m", "distkv", "-C", f"instances={root}/etc/distkv", "instance",
         "--check", *args], capture_output=True, text=True)  # fmt: skip


def test_setup_writes_commented_instance_files_whose_units_verify(tmp_path):
    def setup_inst(*args):
        res = subprocess.run([sys.executable, "-m", "distkv", "setup", *args, "--root",
                              str(tmp_path)], capture_output=True, text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout

    out = setup_inst("gateway", "cellar", "--kind", "owfs", "--auth", "password name=ow password=s")
    assert "systemctl enable --now distkv-gateway@cellar" in out
    assert "- gateway-cellar` to server.services" in out
    # staged: the check it suggests looks at the staged file, not at /etc/distkv
    staged = tmp_path / "etc/distkv/gateway-cellar.cfg"
    assert f"check it with `distkv instance --check {staged}`" in out
    res = subprocess.run([sys.executable, "-m", "distkv", "instance", "--check", str(staged)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    setup_inst("gateway", "kitchen", "--kind", "mqtt", "--uri", "mqtt://broker:1883")
    setup_inst("runner", "boiler", "-g", "heating", "--hw")
    etc = tmp_path / "etc/distkv"
    owfs = etc / "gateway-cellar.cfg"
    assert oct(owfs.stat().st_mode & 0o777) == "0o640"  # it may hold a password
    text = owfs.read_text()
    assert text.startswith("# DistKV owfs gateway instance 'cellar'")
    assert 'auth: "password name=ow password=s"' in text
    # what setup wrote passes the checks (mqtt: valid, but it needs entities first)
    assert _instance("gateway-cellar", root=tmp_path).returncode == 0
    assert _instance("runner-boiler", root=tmp_path).stdout.strip().endswith(
        "ok (runner boiler (-g heating))"
    )
    res = _instance("gateway-kitchen", root=tmp_path)
    assert res.stderr.strip() == (
        f"ConfigError: {etc}/gateway-kitchen.cfg: settings: nothing to do (no entities,"
        " and no mirror topic)"
    )
    # never overwritten
    owfs.write_text("gateway: owfs\n")
    assert "kept" in setup_inst("gateway", "cellar", "--kind", "owfs")
    assert owfs.read_text() == "gateway: owfs\n"
    if shutil.which("systemd-analyze"):
        units = tmp_path / UNITS
        verify = tmp_path / "verify"
        verify.mkdir()
        for unit, name in (("distkv-gateway@.service", "cellar"),
                           ("distkv-runner@.service", "boiler")):  # fmt: skip
            copy = verify / unit.replace("@.", f"@{name}.")
            copy.write_text((units / unit).read_text().replace("%i", name))
        _verify([str(p) for p in verify.iterdir()])


def test_a_bad_instance_name_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "distkv", "setup", "gateway", "a/b", "--kind",
                          "mqtt", "--root", str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "ConfigError: gateway name 'a/b': use letters, digits, '_', '-' and '.'"
    )
