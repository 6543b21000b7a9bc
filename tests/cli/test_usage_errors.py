"""Usage mistakes users make on the command line get one line that says what to do."""

from __future__ import annotations

import pytest

from distkv.cli.main import main


@pytest.fixture
def empty_cfg(tmp_path):
    cfg = tmp_path / "empty.cfg"
    cfg.write_text("")
    return str(cfg)


@pytest.mark.parametrize(
    ("words", "flag", "command"),
    [
        (["server", "-C", "server.bind_default.port=27599", "one"], "-C", "server"),
        (["server", "--conf=server.root=x", "one"], "-C", "server"),
        (["server", "one", "-v"], "-v", "server"),
        (["client", "-C", "connect.port=27599", "data", ":"], "-C", "client"),
        (["client", "-c", "other.cfg", "data", ":"], "-c", "client"),
        (["client", "data", "x", "get", "-vv"], "-v", "client"),
        (["dump", "cfg", "-q"], "-q", "dump"),
    ],
)
def test_a_global_option_after_the_command_says_where_it_goes(
    words, flag, command, empty_cfg, capsys
):
    """The docs write ``distkv -C KEY=VALUE server NAME``; written after the command,
    argparse used to blame another word (``unrecognized arguments: -C one``,
    ``invalid choice: 'connect.port=27599'``) and nothing said where -C belongs."""
    assert main(["-c", empty_cfg, *words]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert f"({flag} goes before the command: distkv {flag} ... {command} ...)" in err


@pytest.mark.parametrize(
    "words",
    [
        ["client", "frob"],
        ["client", "data", "x", "get", "--frob"],
        ["server", "one", "two"],
    ],
)
def test_other_usage_errors_get_no_such_hint(words, empty_cfg, capsys):
    assert main(["-c", empty_cfg, *words]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "goes before the command" not in err


@pytest.mark.parametrize(
    ("ref", "meant"),
    [
        ("kitchen", "gateway-kitchen"),  # the bare name: --check wants KIND-NAME
        ("gateway-kichen", "gateway-kitchen"),  # a typo
        ("runner-job", "runner-jobs"),
        ("gateway-garage", None),  # nothing like it
    ],
)
def test_a_missing_instance_file_names_the_one_meant(ref, meant, tmp_path, empty_cfg, capsys):
    """``distkv instance --check kitchen`` (or ``server.services: [kitchen]``) used to
    say only that ``kitchen.cfg`` does not exist, next to ``gateway-kitchen.cfg``."""
    d = tmp_path / "instances"
    d.mkdir()
    (d / "gateway-kitchen.cfg").write_text("gateway: mqtt\nsettings: {topic: house}\n")
    (d / "runner-jobs.cfg").write_text("hw: false\n")
    (d / "notes.cfg").write_text("")  # not an instance file: never suggested
    assert main(["-c", empty_cfg, "-C", f"instances={d}", "instance", "--check", ref]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ConfigError: no instance file {d}/{ref}.cfg (")
    assert err.count("\n") == 1
    if meant:
        assert f"(did you mean {meant}? or write one with: distkv setup " in err
    else:
        assert "did you mean" not in err



def test_a_file_where_the_state_directory_goes_is_named_as_such(tmp_path, empty_cfg, capsys):
    """Was 'cannot create state directory X: [Errno 17] File exists: 'X'' (it exists:
    so what is wrong?)."""
    from distkv.testing.process import free_port

    f = tmp_path / "state"
    f.write_text("")
    port = f"server.bind_default.port={free_port()}"
    assert main(["-c", empty_cfg, "-C", port, "server", "--state-dir", str(f), "-i", "x", "n"]) == 1
    assert capsys.readouterr().err == (
        f"StorageError: cannot create state directory {f}: a file is in the way\n"
    )
