"""Auth hardening (issue #15, items 6-7): lockout by address counted before the
check, rights that follow every ACL/user change, authorisation before existence."""

import pytest
import trio
import trio.testing

from distkv.core.acl import acl_path, user_path
from distkv.exceptions import (
    AuthFailedError,
    ClientAuthRequiredError,
    PermissionDenied,
)
from distkv.testing.server import (
    login,
    open_memory_client,
    open_test_server,
    raw_connection,
    setup_password,
)
from distkv.util import P
from distkv.wire import codec


class Peer:
    """A session as ``Server.login`` sees it, from some address."""

    def __init__(self, peer):
        self.peer = peer
        self.proto = type("P", (), {"unlock": lambda self: None})()


def auth_msg(seq, name, pw):
    return codec.packb(
        {"seq": seq, "action": "auth", "method": "password", "name": name, "password": pw}
    )


async def test_pipelined_logins_are_checked_one_at_a_time(autojump_clock):
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await setup_password(c)
        a, recv = await raw_connection(s)
        await a.send_all(
            b"".join(auth_msg(i, "joe", f"guess{i}") for i in range(1, 10))
            + auth_msg(10, "joe", "pw-joe")
        )
        msgs = [await recv() for _ in range(10)]
        assert [m["seq"] for m in msgs] == list(range(1, 11))
        assert all(m.get("error") == "auth_failed" for m in msgs), (
            msgs
        )  # the right one came too late
        assert sum("too many failed logins" in m["message"] for m in msgs) == 5


async def test_concurrent_logins_are_counted_before_they_are_checked(autojump_clock):
    """Ten connections try at once (a password check runs in a thread, so they
    overlap): only five are checked at all, the rest are refused unchecked."""
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await setup_password(c)
        conns = [await raw_connection(s) for _ in range(10)]
        for i, (a, _) in enumerate(conns):
            await a.send_all(auth_msg(1, "joe", f"guess{i}"))
        msgs = [await recv() for _, recv in conns]
        assert sum("too many failed" in m["message"] for m in msgs) == 5


async def test_a_stranger_cannot_lock_a_user_out(autojump_clock):
    """Failures from one address lock that address, not the user name."""
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await setup_password(c)

        stranger = Peer("10.0.0.66:4000")
        for i in range(6):
            with pytest.raises(AuthFailedError):
                await s.login(stranger, {"method": "password", "name": "root", "password": str(i)})
        with pytest.raises(AuthFailedError, match="too many"):
            await s.login(stranger, {"method": "password", "name": "root", "password": "pw-root"})
        admin = Peer("10.0.0.1:5000")
        res = await s.login(admin, {"method": "password", "name": "root", "password": "pw-root"})
        assert res["user"] == "root"


async def test_a_wrong_password_on_the_nodes_host_locks_out_only_that_user(autojump_clock):
    """A client on the node's own host with a wrong password (a scraper, five tries)
    locked the address: every runner, gateway and CLI on 127.0.0.1 was refused for
    300 s, and for good if it kept trying. Now only that user is refused from there."""
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await setup_password(c)

        for i in range(6):
            with pytest.raises(AuthFailedError):
                await s.login(
                    Peer(f"127.0.0.1:{40000 + i}"),
                    {"method": "password", "name": "joe", "password": "old"},
                )
        with pytest.raises(AuthFailedError, match="too many"):
            await s.login(
                Peer("127.0.0.1:41000"), {"method": "password", "name": "joe", "password": "pw-joe"}
            )
        res = await s.login(
            Peer("127.0.0.1:41001"), {"method": "password", "name": "root", "password": "pw-root"}
        )
        assert res["user"] == "root"


async def test_rights_follow_acl_and_user_changes_on_live_connections(autojump_clock):
    async with open_test_server() as s:
        async with open_memory_client(s) as early:  # connected while auth is off
            await early.set(P("pub.a"), 1)
            await early.set(acl_path("ro", P("pub.#")), "rx")
            async with early.watch(P("pub")) as w_early:
                await setup_password(early)
                # the connection from before `auth init` is root no more
                with pytest.raises(ClientAuthRequiredError):
                    await early.get(P("pub.a"))
                with trio.fail_after(5), pytest.raises(ClientAuthRequiredError):
                    async for _ in w_early:  # its watch ends too
                        pass
        async with (
            open_memory_client(s, **login("root")) as root,
            open_memory_client(s, **login("joe")) as joe,
        ):
            await joe.set(P("pub.b"), 2)  # no ACL bound yet: unrestricted
            rec = (await root.get(user_path("password", "joe"))).value
            await root.set(user_path("password", "joe"), {**rec, "acl": "ro"})
            with pytest.raises(PermissionDenied):
                await joe.set(P("pub.b"), 3)
            assert (await joe.get(P("pub.b"))).value == 2
            await root.delete(user_path("password", "joe"))
            with pytest.raises(ClientAuthRequiredError):
                await joe.get(P("pub.b"))
            with pytest.raises(ClientAuthRequiredError):
                await joe.set(user_path("password", "joe"), rec)  # no new record either
            assert "value" not in await root.get(user_path("password", "joe"))


async def test_restricted_user_cannot_stop_the_log_nor_learn_what_exists(autojump_clock, tmp_path):
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await c.set(P("secret.k"), 1)
            await c.set(P("pub.a"), 1)
            await c.set(P("pub.hidden.x"), 1)
            await c.set(acl_path("ro", P("pub.#")), "rwcdx")
            await c.set(acl_path("ro", P("pub.hidden.#")), "")
            await setup_password(c, joe={"acl": "ro"})
        s.cfg["server"]["log_dirs"] = [str(tmp_path)]
        async with (
            open_memory_client(s, **login("root")) as root,
            open_memory_client(s, **login("joe")) as joe,
        ):
            await root.request("log", file=str(tmp_path / "backup"))
            with pytest.raises(PermissionDenied):
                await joe.request("log_stop")
            assert s.logfile is not None
            # existing or not, a hidden path gives the same answer: permission
            for p in (P("secret.k"), P("secret.nope")):
                with pytest.raises(PermissionDenied):
                    await joe.set(p, 2, chain=None)
                with pytest.raises(PermissionDenied):
                    await joe.delete(p, chain=None)
            with pytest.raises(PermissionDenied) as err:
                await joe.delete(P("pub"), recursive=True)
            assert "hidden" not in str(err.value)
            assert (await root.get(P("pub.a"))).value == 1
