"""Auth methods, CLI parameter parsing and the login rate limiter (no server needed)."""

from __future__ import annotations

import io
import time

import pytest

from distkv.auth import (
    Ask,
    AuthMethod,
    LoginGuard,
    LoginLimiter,
    get_method,
    method_names,
    parse_auth_spec,
    parse_params,
    register_method,
    resolve_params,
    start_login,
    unregister_method,
)
from distkv.auth.password import DEFAULT_ROUNDS, PasswordMethod
from distkv.core.acl import AclTable, user_path
from distkv.exceptions import (
    AuthError,
    AuthFailedError,
    ClientAuthRequiredError,
    ClientError,
)

# fast hashing for most tests; the real default is measured in test_login_time
FAST = PasswordMethod(rounds=1000)


# --- parameter parsing -----------------------------------------------------------------


def test_parse_params():
    assert parse_params(["name=joe", "password?=Code", "x=a=b", "e="]) == {
        "name": "joe",
        "password": Ask("Code"),
        "x": "a=b",
        "e": "",
    }
    assert parse_params(["pw?="]) == {"pw": Ask("pw")}  # prompt defaults to the key


@pytest.mark.parametrize("bad", ["joe", "=x", "?=x"])
def test_parse_params_errors(bad):
    with pytest.raises(ClientError, match="expected key=value"):
        parse_params([bad])


def test_parse_auth_spec():
    method, params = parse_auth_spec("password name=joe 'password?=Your code'")
    assert method == "password"
    assert params == {"name": "joe", "password": Ask("Your code")}
    assert parse_auth_spec("_test name=joe") == ("_test", {"name": "joe"})
    with pytest.raises(ClientError):
        parse_auth_spec("   ")
    with pytest.raises(ClientError):
        parse_auth_spec("password 'name=joe")


def test_resolve_params_with_prompt_function():
    asked = []

    def prompt(text):
        asked.append(text)
        return "test123"

    res = resolve_params(["name=joe", "password?=Code"], prompt=prompt)
    assert res == {"name": "joe", "password": "test123"}
    assert asked == ["Code"]
    assert resolve_params({"name": "joe"}, prompt=prompt) == {"name": "joe"}


def test_resolve_params_reads_stdin_without_tty(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pw\nnext\n"))
    assert resolve_params(["name=joe", "password?=Code"]) == {
        "name": "joe",
        "password": "s3cret pw",
    }


def test_resolve_params_stdin_closed(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(AuthError, match="no input for 'Code'"):
        resolve_params(["password?=Code"])


def test_resolve_params_uses_getpass_on_tty(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty(""))
    monkeypatch.setattr("getpass.getpass", lambda p: "hidden" if p == "Code: " else "?")
    assert resolve_params(["password?=Code"]) == {"password": "hidden"}


# --- registry --------------------------------------------------------------------------


def test_registry():
    assert {"_test", "password", "root"} <= set(method_names())
    assert get_method("_test").name == "_test"
    assert get_method("password") is get_method("password")
    with pytest.raises(AuthError, match="no auth method 'nope'"):
        get_method("nope")


def test_register_plugin():
    class Always(AuthMethod):
        name = "_always_test_plugin"

        def make_user(self, params):
            return params["name"], {}

        def login_message(self, params):
            return {"method": self.name, "name": params["name"]}

        def verify(self, msg, record):
            return msg["name"]

    register_method(Always())
    try:
        m, name = start_login("_always_test_plugin", {"method": "_always_test_plugin", "name": "x"})
        assert m.verify({"name": "x"}, None) == "x"
    finally:
        unregister_method("_always_test_plugin")
    assert "_always_test_plugin" not in method_names()
    with pytest.raises(AuthError, match="no auth method '_always_test_plugin'"):
        get_method("_always_test_plugin")


# --- password --------------------------------------------------------------------------


def test_password_record_holds_hash_not_password():
    name, rec = FAST.make_user({"name": "joe", "password": "test123", "acl": "writeonly"})
    assert name == "joe"
    assert rec["acl"] == "writeonly"
    assert rec["password"].startswith("$pbkdf2-sha256$1000$")
    assert "test123" not in repr(rec)
    # salted: the same password hashes differently each time
    assert FAST.make_user({"name": "joe", "password": "test123"})[1] != rec
    assert (
        PasswordMethod()
        .make_user({"name": "a", "password": "b"})[1]["password"]
        .startswith(f"$pbkdf2-sha256${DEFAULT_ROUNDS}$")
    )


def test_password_login_ok_and_wrong():
    _, rec = FAST.make_user({"name": "joe", "password": "test123"})
    msg = FAST.login_message({"name": "joe", "password": "test123"})
    assert msg == {"method": "password", "name": "joe", "password": "test123"}
    assert FAST.verify(msg, rec) == "joe"
    bad = dict(msg, password="Test123")
    with pytest.raises(AuthFailedError) as ei:
        FAST.verify(bad, rec)
    assert "Test123" not in str(ei.value) and "test123" not in str(ei.value)
    assert str(ei.value) == "login failed for joe: unknown user or wrong password"


def test_password_unknown_user_same_message():
    msg = FAST.login_message({"name": "nobody", "password": "x"})
    with pytest.raises(
        AuthFailedError, match="^login failed for nobody: unknown user or wrong password$"
    ):
        FAST.verify(msg, None)


def test_password_bad_records_and_messages():
    with pytest.raises(AuthFailedError, match="unusable"):
        FAST.verify({"name": "joe", "password": "x"}, {"password": "garbage"})
    with pytest.raises(AuthFailedError):
        FAST.verify({"name": "joe", "password": 5}, {"password": FAST.hash("x")})
    with pytest.raises(AuthFailedError):
        FAST.verify({"name": "joe", "password": "x"}, {"acl": "a"})  # record w/o hash
    with pytest.raises(ClientError, match="needs password"):
        FAST.make_user({"name": "joe"})
    with pytest.raises(ClientError, match="non-empty"):
        FAST.make_user({"name": "joe", "password": ""})
    with pytest.raises(ClientError, match="needs name"):
        FAST.make_user({"password": "x"})
    with pytest.raises(ClientError, match="no user parameter"):
        FAST.make_user({"name": "joe", "password": "x", "colour": "red"})
    with pytest.raises(ClientError, match="needs name=USER and password"):
        FAST.login_message({"name": "joe", "password": Ask("Code")})


def test_password_update_user():
    _, rec = FAST.make_user({"name": "joe", "password": "old"})
    rec2 = FAST.update_user(rec, {"acl": "writeonly", "groups": "staff,ops"})
    assert rec2["password"] == rec["password"]
    assert rec2["acl"] == "writeonly" and rec2["groups"] == ["staff", "ops"]
    rec3 = FAST.update_user(rec2, {"password": "new"})
    assert FAST.verify({"name": "joe", "password": "new"}, rec3) == "joe"
    with pytest.raises(AuthFailedError):
        FAST.verify({"name": "joe", "password": "old"}, rec3)


def test_login_time():
    """A login with the default rounds must take <= 50 ms (measured ~4 ms here)."""
    m = PasswordMethod()
    _, rec = m.make_user({"name": "joe", "password": "test123"})
    msg = m.login_message({"name": "joe", "password": "test123"})
    t0 = time.process_time()
    for _ in range(3):
        assert m.verify(msg, rec) == "joe"
    assert (time.process_time() - t0) / 3 < 0.050


# --- _test and root --------------------------------------------------------------------


def test_test_method():
    m = get_method("_test")
    name, rec = m.make_user({"name": "joe", "acl": "writeonly"})
    assert (name, rec) == ("joe", {"acl": "writeonly"})
    msg = m.login_message({"name": "joe"})
    assert msg == {"method": "_test", "name": "joe"}
    assert m.verify(msg, rec) == "joe"
    with pytest.raises(AuthFailedError, match="there is no _test user bob"):
        m.verify({"method": "_test", "name": "bob"}, None)
    with pytest.raises(ClientError):
        m.make_user({"name": "joe", "password": "x"})


def test_root_method():
    m = get_method("root")
    assert not m.needs_login
    assert m.verify({}, None) == "root"
    with pytest.raises(ClientError):
        m.make_user({"name": "x"})


# --- server login flow -----------------------------------------------------------------


def test_start_login_auth_off_is_root():
    m, name = start_login(None, None)
    assert (m.name, name) == ("root", "root")
    m, name = start_login(None, {"method": "_test", "name": "joe"})  # peers send connect.auth
    assert (m.name, name) == ("root", "root")
    assert start_login("root", None)[1] == "root"


def test_start_login_required_and_mismatch():
    with pytest.raises(ClientAuthRequiredError, match="^You need to log in using: password$"):
        start_login("password", None)
    with pytest.raises(AuthFailedError, match="uses the password auth method, not _test"):
        start_login("password", {"method": "_test", "name": "joe"})
    with pytest.raises(AuthFailedError, match="needs a user name"):
        start_login("password", {"method": "password", "password": "x"})


def test_full_flow_with_acl_table():
    """Login as the server would, then derive the session's grants."""
    tree: dict = {}
    m = get_method("_test")
    for params in ({"name": "joe", "acl": "writeonly"}, {"name": "root"}):
        name, rec = m.make_user(params)
        tree[user_path(m.name, name)] = rec
    table = AclTable()
    for p, v in tree.items():
        table.apply(p, v)
    msg = m.login_message(resolve_params(["name=joe"]))
    meth, name = start_login("_test", msg)
    user = meth.verify(msg, tree.get(user_path(meth.name, name)))
    g = table.grants(meth.name, user)
    assert g.acl_names == ("writeonly",)
    assert not g.allowed(("x",), "r")


# --- rate limiter ----------------------------------------------------------------------


def test_limiter_locks_after_failures_in_window():
    lim = LoginLimiter(max_failures=3, window=60, lockout=300)
    keys = (("user", "joe"), ("addr", "10.0.0.1"))
    for t in (0, 10, 20):
        lim.check(t, *keys)
        lim.failed(t, *keys)
    with pytest.raises(AuthFailedError, match="too many failed logins; try again in 300 seconds"):
        lim.check(20.5, *keys)
    with pytest.raises(AuthFailedError):
        lim.check(100, ("addr", "10.0.0.1"))
    lim.check(100, ("addr", "10.0.0.2"))  # others are unaffected
    lim.check(320, *keys)  # lockout over


def test_limiter_window_slides():
    lim = LoginLimiter(max_failures=3, window=60, lockout=300)
    lim.failed(0, "k")
    lim.failed(50, "k")
    lim.failed(70, "k")  # the failure at 0 is out of the window
    lim.check(71, "k")
    lim.failed(80, "k")
    with pytest.raises(AuthFailedError):
        lim.check(81, "k")


def test_limiter_success_resets_count():
    lim = LoginLimiter(max_failures=2, window=60, lockout=10)
    lim.failed(0, "k")
    lim.succeeded("k")
    lim.failed(1, "k")
    lim.check(2, "k")
    assert lim.locked_for(2, "k") == 0


def test_limiter_memory_bounded():
    lim = LoginLimiter(max_failures=2, window=60, lockout=10, max_keys=100)
    for i in range(1000):
        lim.failed(0, i)
    assert lim.failing_keys == 100
    for i in range(1000, 1300):
        lim.failed(0, i)
        lim.failed(0, i)
    lim.failed(20, "x")
    lim.failed(20, "x")
    assert lim.locked_keys <= 101


def _login(g: LoginGuard, now: float, addr: str, name: str, ok: bool = False) -> None:
    g.attempt(now, addr, name)
    g.finished(now, addr, name, ok)


def test_guard_a_wrong_password_locks_only_that_user_from_that_address():
    """One client on a host with a wrong password (a scraper retrying every 10 s) must
    not lock out the other clients of that host, nor its user elsewhere."""
    g = LoginGuard()
    for t in range(0, 50, 10):
        _login(g, t, "127.0.0.1", "prom")
    with pytest.raises(AuthFailedError, match="too many failed logins"):
        g.attempt(50, "127.0.0.1", "prom")
    _login(g, 50, "127.0.0.1", "admin", ok=True)  # the host's other users
    _login(g, 50, "10.0.0.5", "prom", ok=True)  # the same user from elsewhere


def test_guard_bounds_the_tries_of_one_address_over_many_names():
    g = LoginGuard()
    for i in range(30):
        _login(g, i, "10.0.0.66", f"user{i}")
    with pytest.raises(AuthFailedError, match="too many failed logins"):
        g.attempt(31, "10.0.0.66", "admin")
    _login(g, 31, "10.0.0.1", "admin", ok=True)  # another address is not affected


def test_guard_counts_tries_in_flight_but_only_failures_lock():
    """Five tries at once: the sixth is refused unchecked; when they all turn out
    right (clients of one host logging in after a node restart), nothing is locked."""
    g = LoginGuard()
    for _ in range(5):
        g.attempt(0, "h", "admin")
    with pytest.raises(AuthFailedError, match="pending"):
        g.attempt(0, "h", "admin")
    for _ in range(5):
        g.finished(0, "h", "admin", True)
    for _ in range(5):
        _login(g, 1, "h", "admin", ok=True)


def test_guard_a_success_does_not_reset_the_address():
    """A valid login of one user must not reset what its address tried on others."""
    g = LoginGuard(per_addr=LoginLimiter(max_failures=3))
    _login(g, 0, "a", "x")
    _login(g, 1, "a", "y")
    _login(g, 2, "a", "guest", ok=True)
    _login(g, 3, "a", "z")  # the third failure locks the address ...
    with pytest.raises(AuthFailedError):
        g.attempt(4, "a", "guest")  # ... for everyone
