"""``--help`` and ``-h`` on every command: usage on stdout, exit code 0, no server
contacted. The commands are found by walking the command table, so a new command is
covered without editing this file."""

from __future__ import annotations

import socket

import pytest

from distkv.cli import commands
from distkv.cli.main import global_parser, main
from gateways.__main__ import GATEWAYS
from gateways.__main__ import main as gateway_main
from gateways.__main__ import parser as gateway_parser

COMMANDS = [([], global_parser()), *commands.walk()]


@pytest.fixture(scope="module")
def listener():
    """A socket where the CLI would connect: nothing may arrive there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            return  # no help contacted a server
        conn.close()
        pytest.fail("a --help connected to the server")


def test_the_walk_finds_every_level():
    words = {" ".join(w) for w, _ in COMMANDS}
    for w in ("server", "client", "client data", "client data set", "client auth user add",
              "client run", "client codec convert", "dump"):  # fmt: skip
        assert w in words


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize(
    ("words", "parser"), [pytest.param(w, p, id=" ".join(w) or "distkv") for w, p in COMMANDS]
)
def test_help(words, parser, flag, listener, tmp_path, capsys):
    port = listener.getsockname()[1]
    cfg = tmp_path / "empty.cfg"
    cfg.write_text("")
    opts = ["-c", str(cfg), "-C", f"connect.port={port}", "-C", f"server.bind_default.port={port}"]
    rc = main([*opts, *words, flag])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith(f"usage: {parser.prog}")
    assert err == ""


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_data_help_with_a_path_is_the_action_help(flag, capsys):
    assert main(["client", "data", "one.two", "set", flag]) == 0
    assert capsys.readouterr().out.startswith("usage: distkv client data set")


GATEWAY_COMMANDS = [[], *([name] for name in sorted(GATEWAYS))]


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("words", GATEWAY_COMMANDS, ids=lambda w: " ".join(w) or "gateway")
def test_gateway_help(words, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        gateway_main([*words, flag])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {gateway_parser().prog}")
