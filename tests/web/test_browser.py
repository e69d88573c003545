"""The web app in a real browser (headless Chromium through Playwright), against real
processes: a relay, and ``tidings web`` for alice and for bob.

Screenshots of the chat, a message's journey and the phone layout are written to
``$TIDINGS_SCREENSHOTS`` (the README's come from there: ``docs/screenshots/``), else to the
test's temporary directory.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import Proc, Server, register

pytestmark = pytest.mark.browser

WAIT_MS = 20_000
#: A fast reconnect for the relay-restart test (the default waits up to 2 min between tries).
FAST_RECONNECT = ("--set", "reconnect_max_seconds=1")

#: Records every change of a tick, in order: a live ✓ → ✓✓ → read is a sequence, not a state.
RECORD_TICKS = """() => {
  window.ticks = [];
  new MutationObserver((records) => {
    for (const r of records)
      if (r.target.classList.contains("tick")) window.ticks.push(r.target.dataset.status);
  }).observe(document.querySelector("#messages"),
             {subtree: true, attributes: true, attributeFilter: ["data-status"]});
}"""


def web(root: Path, name: str, home: Path, procs: list[Proc], *extra: str) -> str:
    proc = Proc(root, name, ["web", "--home", str(home), "--json", *extra])
    procs.append(proc)
    return str(proc.wait_for(lambda line: line.get("event") == "web")["url"])


def relay_with_alice_and_bob(root: Path, procs: list[Proc]) -> Server:
    server = Server(root, root / "data")
    procs.append(server.proc)
    register(root, server.url, "alice", root / "alice")
    register(root, server.url, "bob", root / "bob")
    return server


def shots() -> Path | None:
    out = os.environ.get("TIDINGS_SCREENSHOTS")
    return Path(out) if out else None


def page_of(browser: Any, url: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#state[data-state=online]")
    return page


def test_two_devices_chat_and_the_ticks_move_live(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    relay_with_alice_and_bob(tmp_path, procs)
    a = page_of(
        browser,
        web(tmp_path, "web-alice", tmp_path / "alice", procs),
        viewport={"width": 1100, "height": 680},
    )
    b = page_of(
        browser,
        web(tmp_path, "web-bob", tmp_path / "bob", procs),
        viewport={"width": 1100, "height": 680},
    )
    assert "?token=" not in a.url  # traded for the cookie

    a.fill("#new-contact", "bob")
    a.click("#new-chat button")
    a.evaluate(RECORD_TICKS)
    a.fill("#text", "Hello bob — did this reach you?")
    a.press("#text", "Enter")
    mine = a.locator("#messages li.out").first
    mine.locator(".tick[data-status=delivered]").wait_for()  # bob's daemon has it: ✓✓
    b.locator("#conversations li", has_text="alice").locator(".badge").wait_for()
    b.click("#conversations li")
    b.locator("#messages li.in", has_text="did this reach you").wait_for()
    mine.locator(".tick[data-status=read]").wait_for()  # bob's page showed it: read
    ticks = a.evaluate("window.ticks")
    assert [t for t in ticks if t != "pending"][:3] == ["sent", "delivered", "read"], ticks
    assert "read on bob.1" in mine.locator(".tick").get_attribute("title")

    b.fill("#text", "Yes! Loud and clear.")
    b.press("#text", "Enter")
    a.locator("#messages li.in", has_text="Loud and clear").wait_for()
    b.locator("#messages li.out .tick[data-status=read]").wait_for()  # alice is looking
    out = shots()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        a.screenshot(path=str(out / "web-chat.png"))

    mine.click()  # the journey of alice's message
    points = a.locator("#points li")
    points.filter(has_text="read at bob.1").wait_for()
    text = " ".join(points.all_inner_texts())
    for point in (
        "composed",
        "written",
        "tcp_acked",
        "sent",
        "delivered at bob.1",
        "read at bob.1",
    ):
        assert point in text, text
    assert "committed it to its own disk" in text  # what ✓✓ proves, said next to it
    assert a.locator("#timeline circle").count() == points.count()
    if out is not None:
        a.screenshot(path=str(out / "web-journey.png"))
        a.set_viewport_size({"width": 390, "height": 760})
        a.locator("#journey .close").click()
        a.screenshot(path=str(out / "web-phone.png"), animations="disabled")


def test_a_message_sent_while_the_relay_is_down_shows_pending_then_its_tick(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    server = relay_with_alice_and_bob(tmp_path, procs)
    a = page_of(browser, web(tmp_path, "web-alice", tmp_path / "alice", procs, *FAST_RECONNECT))
    a.fill("#new-contact", "bob")
    a.click("#new-chat button")
    a.fill("#text", "first, while all is well")
    a.press("#text", "Enter")
    a.locator("#messages li.out .tick[data-status=sent]").wait_for()

    assert server.stop() == 0
    a.wait_for_selector("#state[data-state=offline]")
    a.fill("#text", "written while the relay is down")
    a.press("#text", "Enter")
    waiting = a.locator("#messages li.out", has_text="while the relay is down")
    waiting.locator(".tick[data-status=pending]").wait_for()
    assert waiting.locator(".tick").inner_text() == "…"

    again = Server(tmp_path, tmp_path / "data", server.port, "server-again")
    procs.append(again.proc)
    waiting.locator(".tick[data-status=sent]").wait_for()  # ✓: the relay has it now
    a.wait_for_selector("#state[data-state=online]")
    assert again.stop() == 0


def test_a_browser_without_the_token_gets_nothing(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    register(tmp_path, server.url, "alice", tmp_path / "alice")
    url = web(tmp_path, "web-alice", tmp_path / "alice", procs)
    page = browser.new_context().new_page()
    response = page.goto(url.split("?")[0])
    assert response.status == 401 and "tidings web" in page.inner_text("body")
    # a page of another origin cannot make the app act: the browser sends its Origin
    other = page.request.post(
        url.split("?")[0] + "api/send",
        data={"to": "bob", "text": "forged"},
        headers={"Origin": "http://evil.example"},
    )
    assert other.status in (401, 403)
    assert server.stop() == 0
    assert all(p.popen.poll() is None for p in procs[1:])
    procs[1].signal(signal.SIGTERM)


def test_a_long_conversation_scrolls_back_page_by_page(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    relay_with_alice_and_bob(tmp_path, procs)
    url = web(tmp_path, "web-alice", tmp_path / "alice", procs)
    a = page_of(browser, url)
    base = url.split("/?")[0]
    total = 205  # one page (200) and five more
    for i in range(total):
        answer = a.request.post(
            f"{base}/api/send", data={"to": "bob", "text": f"line {i}"}, headers={"Origin": base}
        )
        assert answer.ok and "result" in answer.json(), answer.text()
    a.fill("#new-contact", "bob")
    a.click("#new-chat button")
    a.locator("#messages li.out", has_text="line 204").wait_for()
    assert a.locator("#messages li.out").count() == 200
    assert a.locator("#messages li.out").first.inner_text().startswith("line 5")
    a.click("#messages li.older button")
    a.locator("#messages li.out", has_text="line 0").first.wait_for()
    bodies = [t.split("\n")[0] for t in a.locator("#messages li.out .body").all_inner_texts()]
    assert bodies == [f"line {i}" for i in range(total)]  # in order, none twice
    assert a.locator("#messages li.older").count() == 0  # nothing older left
    # the contact's devices, as the relay lists them, against the safety number
    a.click("#open-safety")
    device = a.locator("#safety-devices li[data-device='bob.1']")
    device.wait_for()
    assert "in this safety number" in device.inner_text()
    a.keyboard.press("Escape")  # close the dialog
    # search across chats: every word, the last as a prefix ("17" finds 17 and 170-179)
    a.fill("#search-text", "line 17")
    a.press("#search-text", "Enter")
    hits = a.locator("#messages li.hit .body")
    hits.first.wait_for()
    assert hits.all_inner_texts() == [
        "line 179",
        *[f"line 17{i}" for i in range(8, -1, -1)],
        "line 17",
    ]
    a.locator("#messages li.hit").first.click()  # opens the chat it is in
    a.locator("#messages li.out", has_text="line 204").wait_for()


def test_a_disappearing_message_leaves_both_pages(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    relay_with_alice_and_bob(tmp_path, procs)
    size = {"width": 1100, "height": 680}
    a = page_of(browser, web(tmp_path, "web-alice", tmp_path / "alice", procs), viewport=size)
    b = page_of(browser, web(tmp_path, "web-bob", tmp_path / "bob", procs), viewport=size)
    a.fill("#new-contact", "bob")
    a.click("#new-chat button")
    a.locator("#timer-box[data-seconds='0']").wait_for()
    a.select_option("#timer", "3600")  # the user picks "1 hour"
    a.locator("#timer-box[data-seconds='3600']").wait_for()
    b.fill("#new-contact", "alice")
    b.click("#new-chat button")
    b.locator("#timer-box[data-seconds='3600']").wait_for()  # the setting reached bob
    assert "set by alice.1" in (b.locator("#timer-box").get_attribute("title") or "")

    # a timer shorter than the presets, through the page's own API (the one the select uses)
    a.evaluate(
        """() => fetch("/api/set_timer", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({contact: "bob", seconds: 2})})"""
    )
    b.locator("#timer-box[data-seconds='2']").wait_for()
    b.fill("#text", "this one will vanish")
    b.press("#text", "Enter")
    mine = b.locator("#messages li.out", has_text="this one will vanish")
    mine.locator(".timer").wait_for()
    theirs = a.locator("#messages li.in", has_text="this one will vanish")
    theirs.locator(".timer").wait_for()  # alice's page shows it: its clock starts there
    out = shots()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        a.screenshot(path=str(out / "web-disappearing.png"))
    theirs.wait_for(state="detached")  # two seconds after it was shown, on both pages
    mine.wait_for(state="detached")
    found = a.evaluate(
        """() => fetch("/api/search", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({text: "vanish"})}).then((r) => r.json())"""
    )
    assert found["result"] == []  # gone from the search index too
