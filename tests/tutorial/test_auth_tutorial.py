"""The tutorial's "Authorization" and "Access restrictions" sections, as printed."""

import pytest

from distkv.testing.process import fails, ok

pytestmark = pytest.mark.slow

DKD = 'dkd() { distkv client data "$@"; }; '


def test_password_auth(server):
    server.start("-i", "Root")
    ok(
        server.run(
            "distkv client auth -m password user add name=joe password?=Code", input="s3cret\n"
        )
    )
    assert ok(server.run("distkv client auth -m password user list")) == "joe\n"
    out = ok(server.run("distkv client auth -m password init -s"))
    assert out == "Authorization switched to password\n"
    fails(
        server.run(DKD + "dkd get"), "ClientAuthRequiredError: You need to log in using: password"
    )
    out = ok(
        server.run('distkv client -a "password name=joe password?=Code" data :', input="s3cret\n")
    )
    assert out == '"Root"\n'
    out = ok(
        server.run('distkv client -a "password name=joe password=s3cret" data internal dump :')
    )
    assert "password: $pbkdf2-sha256$" in out and "s3cret" not in out
    res = server.run('distkv client -a "password name=joe password=Xyzzy42" data :')
    assert res.returncode == 1 and res.stderr.startswith("AuthFailedError: ")
    assert "Xyzzy42" not in res.stderr
    res = server.run('distkv client -a "password name=nobody password=x" data :')
    assert res.returncode == 1 and res.stderr.startswith("AuthFailedError: ")
    # "null" is an ordinary key name
    j = 'distkv client -a "password name=joe password=s3cret" '
    ok(server.run(j + "data null.foo set -v : bar"))
    out = ok(server.run(j + "data : get -rd_"))
    assert "'null':\n  foo:\n    _: bar\n" in out
    assert "s3cret" not in server.log.read_text()


def test_test_auth_and_write_only_acl(server):
    server.start("-i", "Testing")
    ok(server.run("distkv client auth -m _test user add name=joe"))
    ok(server.run("distkv client auth -m _test user add name=root"))
    ok(server.run("distkv client auth -m _test init"))
    fails(
        server.run("distkv client data :"),
        "ClientAuthRequiredError: You need to log in using: _test",
    )
    dkv = 'dkv() { distkv client -a "_test name=joe" "$@"; }; '
    assert ok(server.run(dkv + "dkv data :")) == '"Testing"\n'
    root = 'distkv client -a "_test name=root" '
    ok(server.run(root + "acl set writeonly -a xc 'wom.#'"))
    ok(server.run(root + "auth user set param joe acl writeonly"))
    ok(server.run(dkv + "dkv data wom.foo.bar set -e : 42"))
    fails(
        server.run(dkv + "dkv data wom.foo.bar set -e : 43"),
        "PermissionDenied: joe may not overwrite wom.foo.bar (ACL writeonly grants 'cx' via wom.#)",
    )
    res = server.run(dkv + "dkv data wom.foo")
    assert res.returncode == 1 and res.stderr.startswith(
        "PermissionDenied: joe may not read wom.foo"
    )
    # the restricted user cannot touch the system tree
    res = server.run(dkv + "dkv acl set writeonly -a rwcdx '#'")
    assert res.returncode == 1 and res.stderr.startswith("PermissionDenied: ")
    res = server.run(dkv + "dkv auth -m _test user add name=evil")
    assert res.returncode == 1 and res.stderr.startswith("PermissionDenied: ")
    # reading what you may not read is an error, not an empty answer
    res = server.run(dkv + "dkv data internal dump :")
    assert res.returncode == 1 and res.stderr.startswith("PermissionDenied: joe may not read")
    # root still can read what joe wrote
    assert ok(server.run(root + "data wom.foo.bar")) == "42\n"


def test_user_set_spellings(server):
    server.start("-i", "Testing")
    ok(server.run("distkv client auth -m _test user add name=joe"))
    for cmd in (
        "auth user set param joe acl writeonly",
        "auth -m _test user set joe acl writeonly",
        "auth user set joe acl=writeonly",
        "auth user modify name=joe acl=writeonly",
    ):
        ok(server.run("distkv client auth -m _test user set joe acl -"))
        assert "acl" not in ok(server.run("distkv client auth -m _test user get joe"))
        res = server.run(f"distkv client {cmd}")
        if res.returncode and "which auth method" in res.stderr:  # auth not initialised yet
            res = server.run(f"distkv client {cmd.replace('auth ', 'auth -m _test ', 1)}")
        ok(res)
        assert ok(server.run("distkv client auth -m _test user get joe")) == "acl: writeonly\n", cmd
