"""The interactive fault lab in a real browser (headless Chromium through Playwright): a quick
scenario started from the page reaches its verdict with the timeline drawn. The screenshot
``web-lab.png`` goes to ``$TIDINGS_SCREENSHOTS`` (the README's: ``docs/screenshots/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import Proc
from tests.web.test_browser import relay_with_alice_and_bob, shots, web

pytestmark = pytest.mark.browser

#: A quick server-outage run takes ~12 s on an idle machine; a loaded one is slower.
RUN_MS = 120_000


def test_a_quick_scenario_started_from_the_page_reaches_its_verdict_with_the_timeline(
    tmp_path: Path, procs: list[Proc], browser: Any
) -> None:
    relay_with_alice_and_bob(tmp_path, procs)
    url = web(tmp_path, "web-alice", tmp_path / "alice", procs)
    page = browser.new_context(viewport={"width": 1180, "height": 760}).new_page()
    page.set_default_timeout(20_000)
    page.goto(url)
    page.click("#to-lab")
    page.wait_for_selector("#scenario option[value=server-outage]", state="attached")
    page.select_option("#scenario", "server-outage")
    assert "relay is down" in page.inner_text("#about")
    page.click("#start")
    page.wait_for_selector("#run-state[data-state=running]")
    page.wait_for_selector("#verdict:not([hidden])", timeout=RUN_MS)
    assert page.inner_text("#verdict-head") == "PASS", page.inner_text("#verdict")
    assert page.get_attribute("#run-state", "data-state") == "pass"
    assert int(page.get_attribute("#lab-timeline", "data-points") or 0) > 100
    assert int(page.get_attribute("#lab-timeline", "data-faults") or 0) == 1
    counters = {
        c.get_attribute("data-counter"): c.locator("dd").inner_text()
        for c in page.locator("#counters div").all()
    }
    assert counters["lost"] == counters["duplicated"] == counters["reordered"] == "0"
    assert int(counters["composed"]) == int(counters["sent"]) > 0
    # the full report opens from the page
    href = page.get_attribute("#report-link", "href")
    assert href and href.endswith("/report.html")
    report = page.request.get(url.split("/?")[0] + href)
    assert report.status == 200 and "server-outage" in report.text()
    out = shots()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "web-lab.png"), full_page=True)
    page.screenshot(path=str(tmp_path / "web-lab.png"), full_page=True)
