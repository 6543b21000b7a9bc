"""The page in a real headless chromium (Debian's, over CDP): browse the tree, see
another client's write arrive live, edit a value, see a conflicting edit refused,
log in. Screenshots go to build/screenshots/web/ (DISTKV_SCREENSHOTS overrides)."""

from __future__ import annotations

import json

import pytest
import trio

from distkv.auth import get_method
from distkv.core.acl import acl_path, user_path
from distkv.testing.server import open_memory_client, setup_password
from distkv.util import P, Path

from .cdp import chromium_path, open_browser
from .helpers import open_web_server

pytestmark = pytest.mark.slow


def li(*path: str) -> str:
    """JS expression: the tree row of ``path``."""
    sel = f"li[data-path={json.dumps(json.dumps(list(path), separators=(',', ':')))}]"
    return f"document.querySelector({json.dumps(sel)})"


def value_of(*path: str) -> str:
    return f"{li(*path)}.querySelector(':scope > .value').textContent"


@pytest.fixture
def chromium():
    if chromium_path() is None:
        pytest.skip("chromium is not installed (./test.sh installs it: apt-get install chromium)")


async def test_browse_live_update_edit_conflict(chromium):
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await c.set(P("house.light"), {"power": True, "level": 40})
        await c.set(P("house.temp"), 21.5)
        await c.set(P("garden.pump"), False)
        async with open_browser() as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            await page.wait_for(li("house"))
            assert await page.js(f"!!{li('garden')}")
            # no login form without auth (hidden means not rendered)
            assert await page.js("document.getElementById('login').offsetParent === null")
            await page.js(f"{li('house')}.querySelector('.toggle').click()")
            await page.wait_for(f"{value_of('house', 'temp')} === '21.5'")
            light = await page.js(value_of("house", "light"))
            assert light == "power: true\nlevel: 40"  # YAML
            await page.screenshot("1-tree")

            # another client's write shows up, highlighted, within a second
            t0 = trio.current_time()
            await c.set(P("house.temp"), 22.5)
            await page.wait_for(
                f"{value_of('house', 'temp')} === '22.5'"
                f" && {li('house', 'temp')}.classList.contains('changed')",
                timeout_ms=1000,
            )
            assert trio.current_time() - t0 < 1.0
            await page.screenshot("2-live-update")

            # edit: the value is written with its chain
            await page.js(f"{li('house', 'temp')}.querySelector('.edit').click()")
            await page.js(
                f"{li('house', 'temp')}.querySelector('textarea').value = '23';"
                f"{li('house', 'temp')}.querySelector('.save').click()"
            )
            await page.wait_for(f"{value_of('house', 'temp')} === '23'")
            assert (await c.get(P("house.temp"))).value == 23
            await page.screenshot("3-edited")

            # conflict: someone writes while the editor is open; the edit is refused
            await page.js(f"{li('house', 'temp')}.querySelector('.edit').click()")
            await c.set(P("house.temp"), 30)
            await page.wait_for(f"{value_of('house', 'temp')} === '30'")
            await page.js(
                f"{li('house', 'temp')}.querySelector('textarea').value = '24';"
                f"{li('house', 'temp')}.querySelector('.save').click()"
            )
            msg = await page.wait_for(
                f"{li('house', 'temp')}.querySelector('.editor .error').textContent"
            )
            assert "changed this value meanwhile" in msg and "30" in msg
            assert (await c.get(P("house.temp"))).value == 30
            await page.screenshot("4-conflict")


async def test_login_form_when_auth_is_on(chromium):
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await c.set(P("house.temp"), 21.5)
        name, rec = get_method("password").make_user({"name": "joe", "password": "pw-joe"})
        await c.set(user_path("password", name), rec)
        await c.set(Path(None, "auth"), {"current": "password"})
        async with open_browser() as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            await page.wait_for("!document.getElementById('login').hidden")
            # nothing of the tree before login
            assert await page.js("document.querySelectorAll('#tree li').length") == 0
            assert await page.js("document.getElementById('browser').offsetParent === null")
            await page.js(
                "document.getElementById('login-name').value = 'joe';"
                "document.getElementById('login-password').value = 'wrong';"
                "document.querySelector('#login button').click()"
            )
            err = await page.wait_for("document.getElementById('login-error').textContent")
            assert err
            await page.screenshot("5-login-refused")
            await page.js(
                "document.getElementById('login-password').value = 'pw-joe';"
                "document.querySelector('#login button').click()"
            )
            await page.wait_for(li("house"))
            assert await page.js("document.getElementById('login').offsetParent === null")
            await page.screenshot("6-logged-in")


async def test_acl_restricted_user_sees_only_what_the_acl_allows(chromium):
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await c.set(P("pub.a"), 1)
        await c.set(P("pub.b"), 2)
        await c.set(P("priv.x"), 3)
        await c.set(acl_path("ro", P("pub.#")), "rx")
        await c.set(acl_path("ro", P("pub.b")), "")  # an exception: nothing
        await setup_password(c, joe={"acl": "ro"})
        async with open_browser() as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            await page.wait_for("!document.getElementById('login').hidden")
            await page.js(
                "document.getElementById('login-name').value = 'joe';"
                "document.getElementById('login-password').value = 'pw-joe';"
                "document.querySelector('#login button').click()"
            )
            # the top level is not joe's to read: refused, nothing shown
            status = await page.wait_for(
                "document.getElementById('status').textContent.includes('may not')"
                " && document.getElementById('status').textContent"
            )
            assert "joe may not read" in status
            assert await page.js("document.querySelectorAll('#tree li').length") == 0
            # the subtree the ACL grants: pub.a, but not pub.b
            await page.js("location.hash = 'pub'")
            await page.wait_for(f"{value_of('pub', 'a')} === '1'")
            # pub.b is not joe's to read: not even its name is listed
            assert await page.js(f"{li('pub', 'b')} === null")
            assert await page.js("document.getElementById('status').textContent") == "node test"
            await page.screenshot("7-acl-subtree")
            # the server refuses the write, the page says so
            await page.js(f"{li('pub', 'a')}.querySelector('.edit').click()")
            await page.js(
                f"{li('pub', 'a')}.querySelector('textarea').value = '5';"
                f"{li('pub', 'a')}.querySelector('.save').click()"
            )
            msg = await page.wait_for(
                f"{li('pub', 'a')}.querySelector('.editor .error').textContent"
            )
            assert "joe may not overwrite pub.a" in msg
            root = {"connect": {"auth": "password name=root password=pw-root"}}
            async with open_memory_client(server, **root) as c2:
                assert (await c2.get(P("pub.a"))).value == 1
