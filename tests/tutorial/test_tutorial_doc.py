"""docs/tutorial.md and the README's quick start, executed in order against real processes.

Every ``sh`` and ``python`` block runs as printed (see :mod:`distkv.testing.mdrun` for
the convention) and its output is compared with what the document shows, so the
documents cannot drift from the code. The commands reach a private server through
``DISTKV_CONFIG`` (loopback, a free port, no MQTT); ``/var/lib/distkv`` is a temp dir,
the owserver of the hardware section and the gateways section's mosquitto get free
ports.
"""

from pathlib import Path

import pytest

from distkv.testing.mdrun import Runner, commands, match, parse
from distkv.testing.process import ServerProcess, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def _runner(tmp_path: Path) -> Runner:
    state = tmp_path / "var-lib-distkv"
    state.mkdir()
    # ServerProcess only for its config: port, no MQTT, log_dirs; the document starts
    # and stops the servers itself
    srv = ServerProcess(tmp_path, "cfg", cfg={"server": {"log_dirs": [str(state)]}})
    # the document's owserver port 4305 -> a free one (a system owserver may have 4304)
    subst = {"/var/lib/distkv": str(state), "127.0.0.1:4305": f"127.0.0.1:{free_port()}"}
    subst["owfs.port=4305"] = "owfs.port=" + subst["127.0.0.1:4305"].split(":")[1]
    # the document's private mosquitto on 1884 -> a free port
    mq = free_port()
    subst.update({"listener 1884": f"listener {mq}", "127.0.0.1:1884": f"127.0.0.1:{mq}",
                  "-p 1884": f"-p {mq}"})  # fmt: skip
    # the reader's server is on the default port; ours is in DISTKV_CONFIG
    subst["distkv-gateway -c plug.yaml"] = "distkv-gateway -c $DISTKV_CONFIG -c plug.yaml"
    return Runner(srv.env, tmp_path, subst=subst)


def test_tutorial(tmp_path):
    blocks = parse((ROOT / "docs/tutorial.md").read_text())
    runner = _runner(tmp_path)
    runner.run_all(blocks, "docs/tutorial.md")
    assert len(runner.executed) >= 35  # blocks; a parse slip would run fewer


def test_readme(tmp_path):
    blocks = parse((ROOT / "README.md").read_text())
    runner = _runner(tmp_path)
    runner.run_all(blocks, "README.md")
    assert len(runner.executed) >= 3  # the server, the CLI block, the snippet


def test_convention():
    assert commands("$ a <<END\n> x\n> END\nout\n$ b\n") == [
        ("a <<END\nx\nEND", "out\n"),
        ("b", ""),
    ]
    assert match("a\n...\nz\n", "a\nb\nc\nz\n") and match("a\n...\nz\n", "a\nz\n")
    assert match("x: ...\n", "x: 12\n") and not match("x: 1\n", "x: 12\n")
    assert not match("", "Traceback\n")
    md = "## A\n<!-- run: skip -->\n```sh\n$ rm -rf /\n```\n```python\nprint(1)\n```\n\n```text\n1\n```\n"
    kinds = [(b.kind, b.mode) for b in parse(md)]
    assert kinds == [("section", ""), ("sh", "skip"), ("python", "")]
    assert parse(md)[2].output == "1\n"
