"""Every refusal path of auth and ACLs, through the client API (in-process server)."""

import pytest

from distkv.core.acl import acl_path, user_path
from distkv.exceptions import AuthFailedError, ClientAuthRequiredError, PermissionDenied
from distkv.testing.server import login, open_memory_client, open_test_server, setup_password
from distkv.util import P, Path

AUTH = Path(None, "auth")


async def test_login_required_and_refused(autojump_clock):
    async with open_test_server(init="Root") as s:
        async with open_memory_client(s) as c:
            assert (await c.get(P(":"))).value == "Root"  # auth off: everybody is root
            await setup_password(c)
        async with open_memory_client(s) as c:
            with pytest.raises(ClientAuthRequiredError, match="You need to log in using: password"):
                await c.get(P(":"))
        with pytest.raises(AuthFailedError):
            async with open_memory_client(s, **login("joe", "wrong")):
                pass
        with pytest.raises(AuthFailedError):
            async with open_memory_client(s, **login("nobody")):
                pass
        with pytest.raises(AuthFailedError, match="uses the password auth method"):
            async with open_memory_client(s, connect={"auth": "_test name=joe"}):
                pass
        async with open_memory_client(s, **login("joe")) as c:
            assert c.user == "joe"
            assert (await c.get(P(":"))).value == "Root"


async def test_brute_force_is_limited(autojump_clock):
    async with open_test_server() as s:
        async with open_memory_client(s) as c:
            await setup_password(c)
        for _ in range(5):
            with pytest.raises(AuthFailedError):
                async with open_memory_client(s, **login("joe", "guess")):
                    pass
        with pytest.raises(AuthFailedError, match="(?i)too many|locked|try again"):
            async with open_memory_client(s, **login("joe")):  # right password, still refused
                pass


async def test_acl_rights(autojump_clock):
    async with open_test_server() as s:
        async with open_memory_client(s, **{}) as root:
            await root.set(P("pub.a"), 1)
            await root.set(P("pub.b"), 2)
            await root.set(P("priv.x"), 3)
            await root.set(acl_path("ro", P("pub.#")), "rx")
            await root.set(acl_path("ro", P("pub.b")), "")  # an exception: nothing
            await root.set(acl_path("rw", P("own.#")), "rwcdx")
            await setup_password(root, users=("root", "joe"), joe={"acl": "ro"})
        async with (
            open_memory_client(s, **login("root")) as root,
            open_memory_client(s, **login("joe")) as joe,
        ):
            assert (await joe.get(P("pub.a"))).value == 1
            with pytest.raises(PermissionDenied, match="joe may not read pub.b"):
                await joe.get(P("pub.b"))
            with pytest.raises(PermissionDenied, match="may not enter priv on the way to priv.x"):
                await joe.get(P("priv.x"))
            with pytest.raises(PermissionDenied, match="overwrite pub.a") as denied:
                await joe.set(P("pub.a"), 5)
            # the details survive the wire: which path, which right
            assert tuple(denied.value.info["path"]) == ("pub", "a")
            assert denied.value.info["mode"] == "w"
            with pytest.raises(PermissionDenied, match="create pub.new"):
                await joe.set(P("pub.new"), 5)
            with pytest.raises(PermissionDenied, match="delete pub.a"):
                await joe.delete(P("pub.a"))
            with pytest.raises(PermissionDenied):
                await joe.list(P("priv"))
            assert [r.path async for r in joe.get_tree(P("pub"))] == [P("a")]
            # the system tree is out of reach
            with pytest.raises(PermissionDenied):
                await joe.set(user_path("password", "joe"), {"password": "x"})
            with pytest.raises(PermissionDenied):
                await joe.set(acl_path("ro", P("#")), "rwcdx")
            with pytest.raises(PermissionDenied):
                await joe.get(AUTH)
            # watch: only what joe may read
            async with joe.watch(P("pub")) as w:
                await root.set(P("pub.b"), 20)
                await root.set(P("pub.a"), 10)
                ev = await w.__anext__()
                assert ev.path == P("a") and ev.value == 10
            # ACL edits apply to the running session at once
            await root.set(acl_path("ro", P("pub.#")), "rwcx")
            await joe.set(P("pub.a"), 11)
            # groups: union of rights
            await root.set(Path(None, "auth", "_group", "owners"), {"acl": "rw"})
            rec = (await root.get(user_path("password", "joe"))).value
            await root.set(user_path("password", "joe"), {**rec, "groups": ["owners"]})
            await joe.set(P("own.thing"), 1)
            await joe.set(P("pub.c"), 1)


async def test_unknown_acl_denies(autojump_clock):
    async with open_test_server() as s:
        async with open_memory_client(s) as root:
            await root.set(P("a"), 1)
            await setup_password(root, users=("root", "joe"), joe={"acl": "no-such-acl"})
        async with open_memory_client(s, **login("joe")) as joe:
            with pytest.raises(PermissionDenied):
                await joe.get(P("a"))


async def test_list_names_only_children_the_user_may_read(autojump_clock):
    """Issue #16: ``list`` named children that an ACL hides (their values stayed
    hidden, but the names are the secret: user names, device names). A restricted
    user now sees only the names below which it can read something; get_tree and
    watch never showed hidden entries, and still do not."""
    async with open_test_server() as s:
        async with open_memory_client(s) as root:
            for k in ("open.a", "open.b.deep", "hidden.x", "part.mine.v", "part.theirs.v"):
                await root.set(P(f"home.{k}"), k)
            await root.set(P("home.part.mine"), "m")
            await root.set(acl_path("ro", P("home")), "rx")
            await root.set(acl_path("ro", P("home.open.#")), "rx")
            await root.set(acl_path("ro", P("home.part")), "rx")
            await root.set(acl_path("ro", P("home.part.mine.#")), "rx")
            await setup_password(root, users=("root", "joe"), joe={"acl": "ro"})
        async with (
            open_memory_client(s, **login("root")) as root,
            open_memory_client(s, **login("joe")) as joe,
        ):
            assert await root.list(P("home")) == ["hidden", "open", "part"]
            assert await joe.list(P("home")) == ["open", "part"]
            assert await joe.list(P("home.part")) == ["mine"]
            assert await joe.list(P("home.open")) == ["a", "b"]
            assert await root.list(P("home.part")) == ["mine", "theirs"]
            got = sorted([str(r.path) async for r in joe.get_tree(P("home"))])
            assert got == ["open.a", "open.b.deep", "part.mine", "part.mine.v"]
            async with joe.watch(P("home")) as w:
                await root.set(P("home.hidden.y"), 1)
                await root.delete(P("home.hidden.x"))
                await root.set(P("home.open.a"), 2)
                ev = await w.__anext__()
                assert ev.path == P("open.a") and ev.value == 2


async def test_node_status_needs_a_grant(autojump_clock):
    """get_state names peers, their addresses and conflicts: a restricted user sees it only
    with ``r`` on ``.distkv.metrics`` (as /metrics), an unrestricted one always."""
    async with open_test_server() as s:
        async with open_memory_client(s) as root:
            await root.set(acl_path("ro", P("pub.#")), "rx")
            await root.set(acl_path("mon", Path(".distkv")), "x")
            await root.set(acl_path("mon", Path(".distkv", "metrics")), "r")
            await setup_password(
                root, users=("root", "joe", "ann"), joe={"acl": "ro"}, ann={"acl": "mon"}
            )
        async with (
            open_memory_client(s, **login("root")) as root,
            open_memory_client(s, **login("joe")) as joe,
            open_memory_client(s, **login("ann")) as ann,
        ):
            assert (await root.get_state()).node == s.name
            with pytest.raises(PermissionDenied, match="joe may not"):
                await joe.get_state()
            assert (await ann.get_state()).node == s.name
