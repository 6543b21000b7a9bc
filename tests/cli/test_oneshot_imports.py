"""A one-shot command (``distkv client data x set``, once per value from shell scripts
and Node-RED ``exec`` nodes) loads only what it needs: its start-up is the user's
latency (bench row ``cli_oneshot``, issue 11 item 7)."""

import subprocess
import sys

from distkv.testing.process import ServerProcess

# heavy modules the one-shot path used to load: the event loop, PyYAML (a plain config
# file is read without it), dataclasses/inspect/ast (the schema), socket/selectors
NOT_LOADED = ["trio", "yaml", "dataclasses", "inspect", "ast", "socket", "selectors", "copy"]

CODE = """
import sys
from distkv.cli.main import main
rc = main(sys.argv[1:])
bad = [m for m in {not_loaded!r} if m in sys.modules]
print(rc, bad, file=sys.stderr)
"""


def test_a_one_shot_set_loads_nothing_heavy(tmp_path):
    srv = ServerProcess(tmp_path, "lean")
    try:
        assert srv.start("-i", "x") == "Running."
        res = subprocess.run(
            [sys.executable, "-c", CODE.format(not_loaded=NOT_LOADED),
             "-C", "connect.init_timeout=5", "client", "data", "a.b", "set", "-v", ":", "1"],
            capture_output=True, text=True, env=srv.env, timeout=30,
        )  # fmt: skip
        assert res.stderr.strip() == "0 []", res.stderr
        get = subprocess.run([sys.executable, "-m", "distkv", "client", "data", "a.b", "get"],
                             capture_output=True, text=True, env=srv.env, timeout=30)  # fmt: skip
        assert get.stdout.strip() == "'1'" or get.stdout.strip() == '"1"', get
    finally:
        srv.stop()
