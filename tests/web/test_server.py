"""The web app's HTTP server (tidings.web.server) over real loopback, with a real device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.harness import ClientLab, Peer, RelayLab, is_received
from tidings.web.server import WebApp

WAIT = 20.0


class World:
    def __init__(self, alice: Peer, bob: Peer, app: WebApp) -> None:
        self.alice, self.bob, self.app = alice, bob, app
        self.base = f"http://127.0.0.1:{app.port}"
        self.sessions: list[aiohttp.ClientSession] = []

    def session(self) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # an IP's cookies
        self.sessions.append(s)
        return s

    async def signed_in(self) -> aiohttp.ClientSession:
        s = self.session()
        async with s.get(self.app.url, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
        return s

    async def api(self, s: aiohttp.ClientSession, method: str, **params: Any) -> dict[str, Any]:
        origin = {"Origin": self.base}
        async with s.post(f"{self.base}/api/{method}", json=params, headers=origin) as r:
            assert r.status == 200, await r.text()
            answer: dict[str, Any] = await r.json()
            return answer


@pytest.fixture
async def world(relays: RelayLab, clients: ClientLab) -> AsyncIterator[World]:
    await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")
    app = WebApp(alice.client)
    await app.start()
    w = World(alice, bob, app)
    yield w
    for s in w.sessions:
        await s.close()
    await app.close()


async def test_the_token_is_traded_for_a_strict_cookie_and_the_page_served(world: World) -> None:
    s = world.session()
    async with s.get(world.app.url, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/"  # the token leaves the URL
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    async with s.get(f"{world.base}/") as r:
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Referrer-Policy"] == "no-referrer"
        page = await r.text()
    assert '<script type="module" src="/static/app.js">' in page and "http" not in page.split(
        "<body>"
    )[0].replace("http-equiv", "")  # nothing from elsewhere
    for name in ("app.js", "app.css", "icon.svg"):
        async with s.get(f"{world.base}/static/{name}") as r:
            assert r.status == 200, name
    async with s.get(f"{world.base}/static/../server.py") as r:
        assert r.status == 404


async def test_without_the_token_nothing_is_served_or_done(world: World) -> None:
    s = world.session()
    async with s.get(f"{world.base}/") as r:
        assert r.status == 401
    headers = {"Origin": world.base}
    async with s.post(
        f"{world.base}/api/send", json={"to": "bob", "text": "x"}, headers=headers
    ) as r:
        assert r.status == 401
    async with s.get(f"{world.base}/events") as r:
        assert r.status == 401
    assert world.alice.client.store.conversations() == []  # nothing was sent


async def test_foreign_origins_hosts_and_form_posts_change_nothing(world: World) -> None:
    s = await world.signed_in()
    body = {"to": "bob", "text": "forged"}
    url = f"{world.base}/api/send"
    async with s.post(url, json=body, headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403
    async with s.post(url, json=body, headers={"Host": "evil.example:80"}) as r:
        assert r.status == 421  # DNS rebinding: the page's own name
    async with s.post(
        url, data={"to": "bob", "text": "forged"}, headers={"Origin": world.base}
    ) as r:
        assert r.status == 415  # what an HTML form can send
    async with s.get(f"{url}?to=bob&text=forged") as r:
        assert r.status == 405
    assert world.alice.client.store.conversations() == []


async def test_the_api_and_its_events_through_the_app(world: World) -> None:
    s = await world.signed_in()
    async with s.get(f"{world.base}/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert (await stream.content.readline()).startswith(b": ")
        sent = await world.api(s, "send", to="bob", text="via the web app")
        mid = sent["result"]["message_id"]
        await world.bob.until(is_received(bytes.fromhex(mid)))
        statuses = []
        while "delivered" not in statuses:
            line = await stream.content.readline()
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                if event["event"] == "status" and event["message_id"] == mid:
                    statuses.append(event["status"])
        assert statuses == ["sent", "delivered"]
    (conv,) = (await world.api(s, "conversations"))["result"]
    assert conv["conversation"] == "alice:bob"
    bad = await world.api(s, "send", to="Not An Account", text="x")
    assert bad["error"]["code"] == -32602
    origin = {"Origin": world.base}
    async with s.post(f"{world.base}/api/nope", json={}, headers=origin) as r:
        assert r.status == 404
    async with s.post(
        f"{world.base}/api/status",
        data=b"{",
        headers={**origin, "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
    code = (await world.api(s, "link_code"))["result"]
    assert len(code["code"]) >= 16 and code["qr_svg"].startswith("<svg")
