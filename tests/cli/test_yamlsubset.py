"""distkv.yamlsubset reads plain config files without PyYAML: whatever it returns
must be exactly what yaml.safe_load returns (else it must return None)."""

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from distkv import config
from distkv.yamlsubset import parse

TRICKY = "ab yY:#'\"-._/0123456789\n{}[]~&*!|>%@=,+e"


@settings(max_examples=800, deadline=None)
@given(st.text(TRICKY, max_size=40))
def test_random_text_is_read_as_pyyaml_reads_it_or_not_at_all(text):
    got = parse(text)
    if got is None:
        return
    assert got == yaml.safe_load(text) or (got == {} and yaml.safe_load(text) is None)


_scalar = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
    st.text("abcXYZ _-./:@=019#'\"", max_size=12),
)
_key = st.text("abcdefonsyt_-19", min_size=1, max_size=6)
_leaf = st.one_of(_scalar, st.lists(_scalar, max_size=3))


def _mappings(inner):
    return st.dictionaries(_key, inner, max_size=4)


_tree = st.recursive(_leaf, _mappings, max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_key, _tree, max_size=5), st.booleans())
def test_dumped_configs_round_trip(data, flow):
    text = yaml.safe_dump(data, default_flow_style=flow)
    got = parse(text)
    if got is not None:
        assert got == yaml.safe_load(text)


def test_what_a_config_file_usually_is_needs_no_pyyaml():
    dumped = yaml.safe_dump({"server": {"log_dirs": ["/tmp/x", "/var/lib/distkv"], "port": 1}})
    assert parse(dumped) == {"server": {"log_dirs": ["/tmp/x", "/var/lib/distkv"], "port": 1}}
    text = (
        "# a node\nconnect:\n  host: 127.0.0.1\n  port: 27586   # its port\n"
        '  auth: "password name=gw password=s3cret"\nserver:\n  mqtt:\n'
        "    uri: mqtt://pi.local:1883\n  state_dir: /var/lib/distkv\n"
        "  fsync_interval: 0.5\n  network_key: null\nlogging:\n  level: INFO\n"
    )
    assert parse(text) == yaml.safe_load(text)


def test_a_config_file_with_lists_still_loads(tmp_path):
    f = tmp_path / "c.cfg"
    f.write_text("connect:\n  servers: [a:1, 'b:2']\n  port: 1\n")
    assert config.load([str(f)])["connect"]["servers"] == ["a:1", "b:2"]


@settings(max_examples=800, deadline=None)
@given(st.text(TRICKY.replace("\n", ""), max_size=20))
def test_override_values_are_read_as_pyyaml_reads_them_or_not_at_all(text):
    from distkv.yamlsubset import UNKNOWN, scalar

    got = scalar(text)
    if got is not UNKNOWN:
        assert got == yaml.safe_load(text) and type(got) is type(yaml.safe_load(text))
