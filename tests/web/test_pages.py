"""The status pages in a real headless chromium: nodes (a two-node cluster, one of
which stops), runners and jobs (a real runner runs a job that works and one that
fails), the error tree, gateway entities; an ACL-restricted user sees on them only what
the ACL allows. Screenshots go to build/screenshots/web/."""

from __future__ import annotations

import json
import time

import pytest
import trio

from distkv.client.runner import Runner
from distkv.core.acl import acl_path
from distkv.core.runner import CODE_ROOT, RUN_ROOT
from distkv.groups import unwrap_group
from distkv.server.web import serve_web
from distkv.testing.cluster import open_test_cluster
from distkv.testing.server import open_memory_client, setup_password
from distkv.util import P, Path

from .cdp import open_browser
from .helpers import open_web_server
from .test_browser import chromium  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def q(attr: str, value: str) -> str:
    """JS expression: the card whose data-ATTR is ``value``."""
    return f"document.querySelector({json.dumps(f'[data-{attr}={json.dumps(value)}]')})"


def text(attr: str, value: str) -> str:
    return f"({q(attr, value)} && {q(attr, value)}.textContent)"


async def test_nodes_page_shows_peers_and_a_node_going_down(chromium):  # noqa: F811
    with unwrap_group():
        async with open_test_cluster(2, replica={"heartbeat_ms": 100}) as cl:
            async with trio.open_nursery() as n:
                ports = await n.start(serve_web, cl["n1"])
                async with open_browser() as page:
                    await page.call("Page.navigate", url=f"http://127.0.0.1:{ports[0][1]}/#!nodes")
                    card = await page.wait_for(text("node", "n2"))
                    assert "live" in card and "ready" in card and "missing ticks0" in card
                    me = await page.wait_for("document.querySelector('#nodes .card').textContent")
                    assert me.startswith("n1 (this node)") and "stateready" in me
                    assert (
                        await page.js("document.querySelector('nav a.current').textContent")
                        == "Nodes"
                    )
                    await page.screenshot("8-nodes")
                    await cl.stop("n2")
                    card = await page.wait_for(
                        f"{text('node', 'n2')}.includes('DOWN') && {text('node', 'n2')}",
                        timeout_ms=8000,
                    )
                    assert await page.js(f"{q('node', 'n2')}.classList.contains('bad')")
                    await page.screenshot("9-nodes-one-down")
                n.cancel_scope.cancel()


async def _runner_setup(c) -> None:
    await c.set(Path(*CODE_ROOT, "answer"), {"code": "return 42"})
    await c.set(Path(*CODE_ROOT, "broken"), {"code": "raise RuntimeError('sensor 7 is gone')"})


async def test_runners_jobs_and_errors_pages(chromium):  # noqa: F811
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await _runner_setup(c)
        async with trio.open_nursery() as n, open_memory_client(server) as rc:
            await n.start(Runner(rc, name="r1", heartbeat=0.5).serve)
            async with open_browser() as page:
                await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/#!runners")
                await page.wait_for(text("runner", "any r1"))
                now = time.time()
                await c.set(Path(*RUN_ROOT, "any", "q"), {"code": ["answer"], "target": now})
                await c.set(Path(*RUN_ROOT, "any", "bad"), {"code": ["broken"], "target": now})
                # where it ran and its result arrive live
                good = await page.wait_for(
                    f"{text('job', 'any.q')}?.includes('result42') && {text('job', 'any.q')}"
                )
                assert "runs onr1" in good and "codeanswer" in good
                bad = await page.wait_for(
                    f"{text('job', 'any.bad')}?.includes('sensor 7') && {text('job', 'any.bad')}"
                )
                assert "runs onr1" in bad
                assert await page.js(f"{q('job', 'any.bad')}.classList.contains('bad')")
                await page.screenshot("10-runners-jobs")
                # the error tree: the failing job's record, reported by r1
                await page.js("location.hash = '!errors'")
                err = await page.wait_for("document.querySelector('#errors .card')?.textContent")
                assert ".distkv.run.any.bad" in err and "sensor 7 is gone" in err
                assert "reported byr1" in err and "count1" in err
                await page.screenshot("11-errors")
            n.cancel_scope.cancel()


async def _entities(c) -> None:
    await c.set(P("home.plug.state"), True)
    await c.set(P("home.plug.desired"), False)
    await c.set(P("home.plug.online"), True)
    await c.set(P("home.temp.state"), 21.5)
    await c.set(P("home.temp.online"), False)
    await c.set(P("priv.lock.state"), "locked")
    await c.set(P("priv.lock.online"), True)
    await c.set(
        Path(".distkv", "config", "gateways"),
        {"mqtt": {"uri": "mqtt://localhost:1883", "entities": {"plug": {"path": "home.plug"}}}},
    )


async def test_gateways_page_shows_entities_live(chromium):  # noqa: F811
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await _entities(c)
        async with open_browser() as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/#!gateways")
            plug = await page.wait_for(text("entity", "home.plug"))
            assert "statetrue" in plug and "desiredfalse (not reached)" in plug
            assert "onlineonline" in plug
            assert await page.js(f"{q('entity', 'home.plug')}.classList.contains('warn')")
            assert "OFFLINE" in await page.js(text("entity", "home.temp"))
            assert await page.js(f"{q('entity', 'home.temp')}.classList.contains('bad')")
            assert await page.js(text("entity", "priv.lock"))
            gw = await page.js("document.querySelector('#gateways .card').textContent")
            assert gw.startswith("mqtt") and "entities1" in gw
            # the device follows: state reaches desired, live
            await c.set(P("home.plug.state"), False)
            await page.wait_for(f"!{text('entity', 'home.plug')}.includes('not reached')")
            assert not await page.js(f"{q('entity', 'home.plug')}.classList.contains('warn')")
            await page.screenshot("12-gateways")


async def _login(page, port: int, name: str) -> None:
    await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
    await page.wait_for("!document.getElementById('login').hidden")
    await page.js(
        f"document.getElementById('login-name').value = '{name}';"
        f"document.getElementById('login-password').value = 'pw-{name}';"
        "document.querySelector('#login button').click()"
    )
    await page.wait_for("document.getElementById('login').hidden")


async def test_acl_restricted_user_on_the_status_pages(chromium):  # noqa: F811
    async with open_web_server() as (server, port), open_memory_client(server) as c:
        await _runner_setup(c)
        await _entities(c)
        await c.set(Path(*RUN_ROOT, "any", "q"), {"code": ["answer"], "target": time.time()})
        await c.set(acl_path("ro", P("home.#")), "rx")
        await setup_password(c, joe={"acl": "ro"})
        async with open_browser() as page:
            # before login: no page shows anything, whatever the address says
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/#!gateways")
            await page.wait_for("!document.getElementById('login').hidden")
            assert await page.js("document.getElementById('page').offsetParent === null")
            assert await page.js("document.querySelectorAll('.card').length") == 0
            assert await page.js("document.getElementById('nav').offsetParent === null")
            await _login(page, port, "joe")
            await page.js("location.hash = '!runners'")
            denied = await page.wait_for("document.querySelector('#jobs .denied')?.textContent")
            assert denied.startswith("joe may not")
            assert await page.js("document.querySelectorAll('#jobs .card').length") == 0
            await page.js("location.hash = '!errors'")
            denied = await page.wait_for("document.querySelector('#errors .denied')?.textContent")
            assert denied.startswith("joe may not")
            await page.js("location.hash = '!nodes'")  # peers and addresses: not joe's
            denied = await page.wait_for("document.querySelector('#nodes .denied')?.textContent")
            assert denied.startswith("joe may not")
            await page.js("location.hash = '!gateways'")
            # the whole tree is not joe's; below home it is
            await page.wait_for("document.querySelector('#entities .denied')")
            assert await page.js("document.querySelector('#gateways .denied') !== null")
            await page.js(
                "document.getElementById('gw-path').value = 'home';"
                "document.querySelector('#gw-path').form.requestSubmit()"
            )
            await page.wait_for(text("entity", "home.plug"))
            assert await page.js(text("entity", "priv.lock")) is None
            assert await page.js("document.querySelectorAll('#entities .card').length") == 2
            await page.screenshot("13-acl-gateways")
