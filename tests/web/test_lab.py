"""The web app's fault lab over HTTP (tidings.web.labpage, labrunner), with a real device and
a real ``tidings lab run`` process: what it refuses, and a run stopped from the page."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.harness import ClientLab, RelayLab
from tidings.lab import runner
from tidings.web import labrunner
from tidings.web.labrunner import RUNS_DIR
from tidings.web.server import WebApp

WAIT = 60.0


class Lab:
    def __init__(self, app: WebApp, session: aiohttp.ClientSession) -> None:
        self.app, self.s = app, session
        self.base = f"http://127.0.0.1:{app.port}"

    async def call(self, action: str, **params: Any) -> dict[str, Any]:
        async with self.s.post(
            f"{self.base}/api/lab/{action}", json=params, headers={"Origin": self.base}
        ) as r:
            assert r.status == 200, await r.text()
            answer: dict[str, Any] = await r.json()
            return answer

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async with self.s.get(f"{self.base}/lab/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            async for raw in r.content:
                if raw.startswith(b"data: "):
                    yield json.loads(raw[6:])


@pytest.fixture
async def lab(relays: RelayLab, clients: ClientLab) -> AsyncIterator[Lab]:
    await relays.start()
    alice = await clients.new("alice")
    app = WebApp(alice.client)
    await app.start()
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.get(app.url, allow_redirects=False) as r:
        assert r.status == 303
    yield Lab(app, s)
    await s.close()
    await app.close()


def processes_naming(text: str) -> list[int]:
    """The processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue  # it ended meanwhile
    return found


def test_the_report_file_name_is_the_runners() -> None:
    assert labrunner.REPORT_FILE == runner.REPORT_FILE


async def test_the_scenarios_say_what_they_need_and_bad_requests_start_nothing(lab: Lab) -> None:
    listed = (await lab.call("scenarios"))["result"]
    names = {s["name"]: s for s in listed}
    assert {"server-crash", "half-open", "dead-zone"} <= set(names)
    assert names["half-open"]["root"] is False and names["dead-zone"]["kernel"] is True
    for s in listed:
        assert s["available"] is (s["reason"] is None)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"scenario": "no-such"}, "no scenario 'no-such'"),
        ({}, "give the scenario's name"),
        ({"scenario": "half-open", "quick": "yes"}, "quick is true or false"),
        ({"scenario": "half-open", "seed": -1}, "the seed is a whole number"),
        ({"scenario": "half-open", "seed": 1.5}, "the seed is a whole number"),
    ]
    for params, says in bad:
        answer = await lab.call("start", **params)
        assert says in answer["error"]["message"], answer
    assert (await lab.call("stop"))["error"]["message"] == "no run is going"
    assert (await lab.call("state"))["result"] is None
    assert not (lab.app.client.home / RUNS_DIR).exists()  # nothing was started
    async with lab.s.post(f"{lab.base}/api/lab/nope", json={}) as r:
        assert r.status == 404
    async with lab.s.get(f"{lab.base}/api/lab/start") as r:
        assert r.status == 405  # no state change on GET
    async with lab.s.post(
        f"{lab.base}/api/lab/start",
        json={"scenario": "half-open"},
        headers={"Origin": "http://evil.example"},
    ) as r:
        assert r.status == 403
    async with (
        aiohttp.ClientSession() as stranger,  # no cookie
        stranger.post(f"{lab.base}/api/lab/start", json={"scenario": "x"}) as r,
    ):
        assert r.status == 401
    async with lab.s.get(f"{lab.base}/lab/runs/../../etc/report.html") as r:
        assert r.status == 404
    assert not (lab.app.client.home / RUNS_DIR).exists()


async def test_a_run_started_from_the_page_is_followed_live_and_stopped_cleanly(
    lab: Lab,
) -> None:
    started = await lab.call("start", scenario="server-outage", quick=True, seed=5)
    run = started["result"]
    assert (run["scenario"], run["seed"], run["quick"], run["state"]) == (
        "server-outage",
        5,
        True,
        "running",
    )
    again = await lab.call("start", scenario="server-crash")
    assert "server-outage is running" in again["error"]["message"]
    seen: list[dict[str, Any]] = []
    pid = None
    async with asyncio.timeout(WAIT):
        async for message in lab.events():
            seen.append(message)
            if message["type"] == "tick" and message["points"] and pid is None:
                service = lab.app.lab
                assert service.current is not None and service.current.proc is not None
                pid = service.current.proc.pid
                assert (await lab.call("stop"))["result"]["state"] == "stopping"
            if message["type"] == "verdict":
                break
    kinds = [m["type"] for m in seen]
    assert kinds[0] == "run" and "phase" in kinds and kinds[-1] == "verdict"
    points = [p for m in seen if m["type"] == "tick" for p in m["points"]]
    assert {"composed"} <= {p["lane"] for p in points}
    assert all(p["t"] >= 0 for p in points)
    verdict = seen[-1]
    assert verdict["stopped"] is True and verdict["ok"] is False
    assert verdict["state"] == "finished"
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the lab process and everything in its group are gone
    run_dir = lab.app.client.home / RUNS_DIR / run["id"] / "server-outage"
    assert (run_dir / "record.jsonl").exists()
    assert processes_naming(str(run_dir)) == []  # its relay and devices were stopped too
    # a page opened afterwards replays the same run from its start
    replay: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        async for message in lab.events():
            replay.append(message)
            if message["type"] == "verdict":
                break
    assert replay == seen
    state = (await lab.call("state"))["result"]
    assert state["id"] == run["id"] and state["state"] == "finished"


async def test_without_root_the_kernel_scenarios_are_offered_as_unavailable_and_refused(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "network namespaces need root (run as root, or with CAP_NET_ADMIN)"
    monkeypatch.setattr(runner, "available", lambda s: reason if (s.kernel or s.mounts) else None)
    listed = {s["name"]: s for s in (await lab.call("scenarios"))["result"]}
    assert listed["dead-zone"]["available"] is False and listed["dead-zone"]["reason"] == reason
    assert listed["disk-full"]["available"] is False  # tmpfs mounts
    assert listed["half-open"]["available"] is True  # the user-space proxy: no root needed
    refused = await lab.call("start", scenario="dead-zone", quick=True)
    assert refused["error"]["message"] == f"dead-zone cannot run here: {reason}"
    assert not (lab.app.client.home / RUNS_DIR).exists()
