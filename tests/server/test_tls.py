"""TLS on the client port: the password never crosses the network in clear text."""

import subprocess

import pytest

from distkv.client import open_client
from distkv.exceptions import ServerClosedError
from distkv.testing.cli import run_cli
from distkv.testing.server import make_config, open_test_server
from distkv.util import P


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(crt), str(key)


async def test_tls_roundtrip(cert):
    crt, key = cert
    cfg = make_config(
        server={"bind_default": {"host": "127.0.0.1", "ssl": {"cert": crt, "key": key}}}
    )
    async with open_test_server(tcp=True, cfg=cfg, init="Testing") as s:
        host, port = s.ports[0]
        ccfg = make_config(connect={"host": host, "port": port, "ssl": {"cert": crt}})
        async with open_client(ccfg) as c:
            await c.set(P("secret"), "over TLS")
            assert (await c.get(P("secret"))).value == "over TLS"
        # a plain client cannot talk to the TLS port
        with pytest.raises(ServerClosedError):
            plain = make_config(connect={"host": host, "port": port, "init_timeout": 0.5})
            async with open_client(plain):
                pass
        # and the server is still fine afterwards
        async with open_client(ccfg) as c:
            assert (await c.get(P("secret"))).value == "over TLS"


async def test_tls_one_shot_cli(cert):
    """The CLI's one-shot commands use their own blocking client: TLS works there too."""
    crt, key = cert
    cfg = make_config(
        server={"bind_default": {"host": "127.0.0.1", "ssl": {"cert": crt, "key": key}}}
    )
    async with open_test_server(tcp=True, cfg=cfg, init="Testing") as s:
        host, port = s.ports[0]
        ccfg = make_config(connect={"host": host, "port": port, "ssl": {"cert": crt}})
        r = await run_cli(["client", "data", "secret", "set", "-v", ":", "over TLS"], cfg=ccfg)
        assert (r.code, r.err) == (0, "")
        r = await run_cli(["client", "data", "secret"], cfg=ccfg)
        assert (r.code, r.out) == (0, '"over TLS"\n')
        plain = make_config(connect={"host": host, "port": port, "init_timeout": 0.5})
        r = await run_cli(["client", "data", "secret"], cfg=plain)
        assert r.code == 1 and r.err.startswith("ServerClosedError: the server did not greet us")
        assert r.err.count("\n") == 1
