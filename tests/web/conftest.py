"""Fixtures of the web app's tests: real processes, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.cli.conftest import procs

__all__ = ["CHROMIUM_ARGS", "browser", "procs"]

#: How Chromium runs here: headless, and without the background connections the closed network
#: refuses (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's package). Missing, the tests skip, unless
    ``TIDINGS_REQUIRE_BROWSER`` is set (``.ci/run`` sets it and installs ``chromium``)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("TIDINGS_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
