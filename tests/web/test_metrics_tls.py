"""``/metrics`` (Prometheus text) and TLS on the web port."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess

import pytest
import trio
from trio_websocket import open_websocket

from distkv.config import check as check_config
from distkv.core.acl import acl_path
from distkv.exceptions import ConfigError
from distkv.server.metrics import BUCKETS, SAMPLE, Metrics, render
from distkv.server.web import WebSocketStream, basic_credentials
from distkv.testing.server import make_config, open_memory_client, setup_password
from distkv.util import P, Path

from .helpers import http_get, open_web_server


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition (None: not there)."""
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    want = f"{name}{{{lab}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        if key == want:
            return float(val)
    return None


async def test_metrics_count_requests_by_action_with_latency_histogram():
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        for i in range(5 * SAMPLE):
            await c.set(P(f"m.k{i}"), i)
        for i in range(3):
            await c.get(P(f"m.k{i}"))
        async with c.watch(P("m")):
            status, headers, body = await http_get(port, "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        text = body.decode()
        assert sample(text, "distkv_requests_total", action="set_value") == 5 * SAMPLE
        assert sample(text, "distkv_requests_total", action="get_value") == 3
        # one request in SAMPLE is timed; cumulative buckets end at the count
        inf = sample(text, "distkv_request_duration_seconds_bucket", action="set_value", le="+Inf")
        assert inf in (5, 6)
        assert sample(text, "distkv_request_duration_seconds_count", action="set_value") == inf
        assert sample(text, "distkv_watchers") == 1
        assert sample(text, "distkv_conflicts_total") == 0
        assert sample(text, "distkv_entries") >= 5
        # every line is a comment or `name{labels} number`
        for line in text.splitlines():
            assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [-0-9.e+]+", line)


def test_histogram_buckets_and_unknown_actions_are_bounded():
    m = Metrics(["get_value"])
    m.observe("get_value", 0.0001)  # on a bound: counted in that bucket (le is <=)
    m.observe("get_value", 5.0)  # above the last bound: only +Inf
    for i in range(100):
        m.done(f"junk{i}", 0.0)  # names a client made up share one label
        m.observe(f"junk{i}", 0.001)
    text = render(m, {}, 0)
    assert (
        sample(text, "distkv_request_duration_seconds_bucket", action="get_value", le="0.0001") == 1
    )
    last = str(BUCKETS[-1])
    assert sample(text, "distkv_request_duration_seconds_bucket", action="get_value", le=last) == 1
    assert (
        sample(text, "distkv_request_duration_seconds_bucket", action="get_value", le="+Inf") == 2
    )
    assert sample(text, "distkv_requests_total", action="_unknown") == 100
    assert "junk" not in text


def test_replication_state_becomes_per_peer_and_per_origin_samples():
    state = {
        "clients": 2,
        "conflicts": 3,
        "replication": {
            "ready": True,
            "syncing": False,
            "ticks": {
                "a": {"seen": [[1, 10], [15, 20]], "known": 25, "missing": [[11, 14]]},
                "b": {"seen": [[1, 7]], "known": 7, "missing": []},
            },
            "peers": {"a": {"live": True, "last_seen_s": 0.4}, "b": {"live": False}},
            "stats": {"sent": 4},
            "bus": {"connected": True, "connects": 2, "disconnects": 1},
        },
    }
    text = render(Metrics([]), state, 0)
    assert sample(text, "distkv_replication_missing_ticks", origin="a") == 4
    assert sample(text, "distkv_replication_missing_ticks", origin="b") == 0
    assert sample(text, "distkv_replication_lag_ticks", origin="a") == 5
    assert sample(text, "distkv_replication_lag_ticks", origin="b") == 0
    assert sample(text, "distkv_peer_live", peer="b") == 0
    assert sample(text, "distkv_peer_last_seen_seconds", peer="a") == 0.4
    assert sample(text, "distkv_bus_connects_total") == 2
    assert sample(text, "distkv_bus_disconnects_total") == 1
    assert sample(text, "distkv_conflicts_total") == 3


async def _users(c, *, acl_rules: dict) -> None:
    for path, rights in acl_rules.items():
        await c.set(acl_path("ro", path), rights)
    await c.set(acl_path("prom", Path(".distkv")), "x")  # as for any path: x on the way
    await c.set(acl_path("prom", Path(".distkv", "metrics")), "r")
    await setup_password(c, users=("root", "joe", "prom"), joe={"acl": "ro"}, prom={"acl": "prom"})


async def test_metrics_need_a_login_and_the_acl_right_when_auth_is_on():
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await _users(c, acl_rules={P("pub.#"): "rwc"})
        status, headers, body = await http_get(port, "/metrics")
        assert status == 401 and "basic" in headers["www-authenticate"].lower()
        assert b"distkv_" not in body
        status, _, body = await http_get(port, "/metrics", auth=("joe", "wrong"))
        assert status == 401 and b"distkv_" not in body
        # joe's ACL grants pub.#, not .distkv.metrics
        status, _, body = await http_get(port, "/metrics", auth=("joe", "pw-joe"))
        assert status == 403 and b"joe may not read :.distkv.metrics" in body
        status, _, body = await http_get(port, "/metrics", auth=("prom", "pw-prom"))
        assert status == 200 and b"distkv_requests_total" in body
        status, _, body = await http_get(port, "/metrics", auth=("root", "pw-root"))
        assert status == 200 and b"distkv_requests_total" in body


def test_basic_credentials_parsing():
    assert basic_credentials("Basic am9lOnB3OmNvbG9u") == ("joe", "pw:colon")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Bearer xyz") is None
    assert basic_credentials(None) is None


# --- TLS


@pytest.fixture
def cert(tmp_path):
    """A self-signed certificate for 127.0.0.1, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (./test.sh installs it)")
    crt, key = tmp_path / "web.crt", tmp_path / "web.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


async def test_page_metrics_and_websocket_over_tls(cert):
    crt, key = cert
    ctx = ssl.create_default_context(cafile=str(crt))
    ssl_cfg = {"cert": str(crt), "key": str(key)}
    async with open_web_server(ssl=ssl_cfg) as (server, port), open_memory_client(server) as c:
        await c.set(P("house.temp"), 21.5)
        status, _, body = await http_get(port, "/", ssl_context=ctx)
        assert status == 200 and b"<title>DistKV</title>" in body
        status, _, body = await http_get(port, "/metrics", ssl_context=ctx)
        assert status == 200 and b"distkv_requests_total" in body
        # plain HTTP on the TLS port gets nothing
        with trio.fail_after(5):
            with pytest.raises((ValueError, IndexError, trio.BrokenResourceError)):
                await http_get(port, "/")
        # the client protocol over wss://, with the page's own origin
        from distkv.client import open_client

        hdr = [(b"Origin", f"https://127.0.0.1:{port}".encode())]
        async with open_websocket("127.0.0.1", port, "/ws", use_ssl=ctx, extra_headers=hdr) as ws:
            async with open_client(make_config(), _stream=WebSocketStream(ws)) as client:
                assert (await client.get(P("house.temp"))).value == 21.5


async def test_web_tls_settings_are_checked(tmp_path):
    web = {"enabled": True, "ssl": {"cert": 5}}
    cfg = make_config(server={"bind_default": {"port": 27586}, "web": web})
    with pytest.raises(ConfigError, match="server.web.ssl: cert: 5 is not a string"):
        check_config(cfg)
    missing = {"cert": str(tmp_path / "nope.crt"), "key": str(tmp_path / "nope.key")}
    with pytest.raises(ConfigError, match=r"server\.web\.ssl: cannot load .*nope\.crt"):
        async with open_web_server(ssl=missing):
            pass


async def test_metrics_of_a_real_cluster_name_peers_and_origins():
    """The samples come from the node's real state (not a hand-made dict): a peer, its
    liveness, missing ticks per origin and the bus counters."""
    from distkv.groups import unwrap_group
    from distkv.server.web import serve_web
    from distkv.testing.cluster import open_test_cluster

    with unwrap_group():
        async with open_test_cluster(2, replica={"heartbeat_ms": 100}) as cl:
            async with cl.client("n2") as c:
                await c.set(P("from.n2"), 1)
            await cl.wait_converged()
            async with trio.open_nursery() as n:
                ports = await n.start(serve_web, cl["n1"])
                _, _, body = await http_get(ports[0][1], "/metrics")
                n.cancel_scope.cancel()
    text = body.decode()
    assert sample(text, "distkv_peer_live", peer="n2") == 1
    assert sample(text, "distkv_replication_missing_ticks", origin="n2") == 0
    assert sample(text, "distkv_replication_lag_ticks", origin="n2") == 0
    assert sample(text, "distkv_ready") == 1
    assert sample(text, "distkv_bus_connected") == 1
    assert sample(text, "distkv_bus_connects_total") >= 1
    assert sample(text, "distkv_peer_last_seen_seconds", peer="n2") < 5
