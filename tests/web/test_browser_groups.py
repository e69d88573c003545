"""Groups in the web app, in a real browser (headless Chromium through Playwright), against
real processes: a relay, ``tidings web`` for alice and for bob, and ``tidings daemon`` for
carol. alice makes a group in her page, adds carol, sends; bob's page gets it; the roll-up
moves from "delivered to …" to "read by 1"; bad input shows the device's error and changes
nothing; alice removes carol and both pages say so.

Screenshots go to ``$TIDINGS_SCREENSHOTS`` if set, else to the test's temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import Proc, register
from tests.web.test_browser import page_of, relay_with_alice_and_bob, shots, web

pytestmark = pytest.mark.browser

SIZE = {"width": 1180, "height": 720}


def test_a_group_is_made_chatted_in_and_changed_in_the_page(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    server = relay_with_alice_and_bob(tmp_path, procs)
    register(tmp_path, server.url, "carol", tmp_path / "carol")
    carol = Proc(tmp_path, "daemon-carol", ["daemon", "--home", str(tmp_path / "carol"), "--json"])
    procs.append(carol)
    carol.wait_for(lambda line: line.get("event") == "connected")
    a = page_of(browser, web(tmp_path, "web-alice", tmp_path / "alice", procs), viewport=SIZE)
    b = page_of(browser, web(tmp_path, "web-bob", tmp_path / "bob", procs), viewport=SIZE)
    out = shots() or tmp_path
    out.mkdir(parents=True, exist_ok=True)

    # bad input: the device's own error, and no group appears
    a.click("#new-group-box summary")
    a.fill("#group-members", "bob")
    a.click("#new-group button")
    error = a.locator("#new-group-error")
    error.filter(has_text="name must be a non-empty string").wait_for()
    a.fill("#group-name", "climbers")
    a.fill("#group-members", "bob, zed")
    a.click("#new-group button")
    error.filter(has_text="no account 'zed' at the relay").wait_for()
    assert a.locator("#conversations li.group").count() == 0

    # a group with bob; carol is added from the members panel
    a.fill("#group-members", "bob")
    a.click("#new-group button")
    a.locator("#contact", has_text="climbers").wait_for()
    assert a.locator("#chat-sub").inner_text() == "you, bob"
    assert error.is_hidden()
    a.locator("#conversations li.group.current", has_text="climbers").wait_for()
    a.click("#open-members")
    a.fill("#add-accounts", "carol")
    a.click("#add-members button")
    a.locator("#member-list li[data-account=carol]").wait_for()
    a.locator("#messages li.system", has_text="you added carol").wait_for()
    assert a.locator("#chat-sub").inner_text() == "you, bob, carol"
    assert a.locator("#member-list li[data-account=alice] .tag").inner_text() == "admin"

    a.fill("#text", "Who is in for Saturday? <b>not bold</b>")
    a.press("#text", "Enter")
    mine = a.locator("#messages li.out").first
    assert mine.locator(".from").inner_text() == "me"
    assert mine.locator(".body").inner_text() == "Who is in for Saturday? <b>not bold</b>"
    rollup = mine.locator(".rollup")
    rollup.filter(has_text="delivered to 2 of 2").wait_for()  # bob's and carol's devices have it
    assert "read by" not in rollup.inner_text()

    # bob's page: the group with its unread count; opening it reads it, and alice sees that
    entry = b.locator("#conversations li.group", has_text="climbers")
    assert entry.locator(".badge").inner_text() == "1"
    entry.click()
    theirs = b.locator("#messages li.in", has_text="Who is in for Saturday?")
    theirs.wait_for()
    assert theirs.locator(".from").inner_text() == "alice.1"
    rollup.filter(has_text="delivered to 2 of 2 · read by 1").wait_for()
    assert mine.locator(".tick").inner_text() == "✓✓"
    b.fill("#text", "Me! Bringing the rope.")
    b.press("#text", "Enter")
    reply = a.locator("#messages li.in", has_text="Bringing the rope")
    reply.wait_for()
    assert reply.locator(".from").inner_text() == "bob.1"
    a.screenshot(path=str(out / "web-group.png"))

    # bob is not an admin: his device refuses, his page says so, nothing changes
    b.click("#open-members")
    assert "Only admins (alice)" in b.locator("#admins-only").inner_text()
    assert b.locator("#member-list button[data-action=group_remove]").count() == 0
    b.fill("#add-accounts", "dave")
    b.click("#add-members button")
    b.locator("#members-error", has_text="bob is not an admin").wait_for()
    assert b.locator("#member-list li").count() == 3

    # alice removes carol: both pages show it
    a.click("#member-list li[data-account=carol] button[data-action=group_remove]")
    a.locator("#member-list li[data-account=carol]").wait_for(state="detached")
    a.locator("#messages li.system", has_text="you removed carol").wait_for()
    b.locator("#messages li.system", has_text="alice.1 removed carol").wait_for()
    b.locator("#member-list li[data-account=carol]").wait_for(state="detached")
    assert b.locator("#chat-sub").inner_text() == "alice, you"
    a.screenshot(path=str(out / "web-group-members.png"))
    b.screenshot(path=str(out / "web-group-bob.png"))

    # what alice sends now goes to bob only
    a.fill("#text", "Just us two then.")
    a.press("#text", "Enter")
    last = a.locator("#messages li.out", has_text="Just us two")
    last.locator(".rollup", has_text="delivered to 1 of 1 · read by 1").wait_for()
    a.set_viewport_size({"width": 390, "height": 760})
    a.locator("#members .close").click()
    a.screenshot(path=str(out / "web-group-phone.png"), animations="disabled")
