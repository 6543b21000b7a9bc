"""Configuration: files, the search path, DISTKV_CONFIG, -C overrides, clear errors."""

import pytest

from distkv import config
from distkv.exceptions import ConfigError


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DISTKV_CONFIG", raising=False)
    monkeypatch.setattr(config, "SEARCH_PATHS", (str(tmp_path / "none.cfg"),))
    cfg = config.load()
    assert cfg["connect"]["port"] == 27586 == cfg["server"]["bind_default"]["port"]
    assert cfg["server"]["bind_default"]["host"] == "127.0.0.1"
    assert cfg["server"]["mqtt"]["uri"] is None  # a lone node needs no broker


def test_search_path_env_file_and_overrides(monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "distkv.cfg").write_text("server:\n  root: fromhome\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DISTKV_CONFIG", raising=False)
    assert config.load()["server"]["root"] == "fromhome"
    env = tmp_path / "env.cfg"
    env.write_text("server:\n  root: fromenv\nconnect:\n  port: 1234\n")
    monkeypatch.setenv("DISTKV_CONFIG", str(env))
    cfg = config.load()
    assert cfg["server"]["root"] == "fromenv" and cfg["connect"]["port"] == 1234
    assert cfg["connect"]["host"] == "127.0.0.1"  # merged over the defaults
    explicit = tmp_path / "c.cfg"
    explicit.write_text("server:\n  root: fromfile\n")
    cfg = config.load(
        [str(explicit)], ["server.root=cli", "connect.port=99", "server.log_dirs=[a, b]"]
    )
    assert cfg["server"]["root"] == "cli"
    assert cfg["connect"]["port"] == 99
    assert cfg["server"]["log_dirs"] == ["a", "b"]
    assert config.load(extra={"connect": {"port": 5}})["connect"]["port"] == 5


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "server.bind_defualt.port=1",
            "unknown setting server.bind_defualt (did you mean server.bind_default?)",
        ),
        (
            "server.bind_default.port=notaport",
            "server.bind_default.port: 'notaport' is not an integer from 1 to 65535",
        ),
        (
            "server.replication.presence=1",
            "unknown setting server.replication.presence (known: heartbeat_ms",
        ),
        (
            "server.mqtt.max_backof=3",
            "server.mqtt: unknown setting max_backof (did you mean max_backoff?)",
        ),
        (
            "server.fsync=sometimes",
            "server.fsync: 'sometimes' is not one of 'always', 'interval', 'never'",
        ),
        ("connect.servers=5", "connect.servers: 5 is not a string or a list of strings"),
        ("new.key=[1, 2]", "unknown setting new (known: connect, server, logging, gateways, instances)"),
    ],
)
def test_unknown_keys_and_wrong_types_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as info:
        config.load(["/dev/null"], [override])
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_every_default_fits_the_schema():
    config.check(config.DEFAULTS)
    assert config.load(["/dev/null"]) == config.DEFAULTS


@pytest.mark.parametrize(
    "content,match", [("x: [\n", "not valid YAML"), ("- a list\n", "must hold a mapping")]
)
def test_bad_files(tmp_path, content, match):
    f = tmp_path / "bad.cfg"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match) as ei:
        config.load([str(f)])
    assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load([str(tmp_path / "missing.cfg")])


def test_bad_overrides():
    with pytest.raises(ConfigError, match="key=value"):
        config.parse_override("server.root")
    with pytest.raises(ConfigError, match="needs a key"):
        config.parse_override("=3")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("gateway: mqtt\n  settings: x\n", "line 2, column 11: mapping values are not allowed here"),
        ("a:\n\tb: 1\n", "line 2, column 1: found character '\\t' that cannot start any token"),
    ],
)
def test_a_yaml_mistake_names_its_line_and_column(tmp_path, content, where):
    """Was PyYAML's text squeezed onto one line: 'in "<unicode string>", line 2,
    column 11: settings: x ^' (the caret under nothing, the file named twice)."""
    f = tmp_path / "bad.cfg"
    f.write_text(content)
    with pytest.raises(ConfigError) as ei:
        config.load([str(f)])
    assert str(ei.value).startswith(f"config file {f} is not valid YAML: {where}")
    assert "unicode string" not in str(ei.value)


def test_a_yaml_mistake_in_an_override_names_its_column():
    with pytest.raises(ConfigError) as ei:
        config.parse_override("server.services=[gateway-x")
    assert str(ei.value) == (
        "cannot parse value of -C server.services: line 1, column 11: expected ',' or ']', "
        "but got '<stream end>' (while parsing a flow sequence)"
    )
