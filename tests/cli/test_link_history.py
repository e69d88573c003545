"""``tidings link --send-history`` (issue 13: history offered at link time): the command waits
for the new device to register with the code it printed and sends it the history — run as the
device itself, and through the daemon that runs it. Real processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.test_cli import Proc, Server, register, run
from tests.cli.test_history_kill import N, fill, history_rows

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def link_then_register(tmp_path: Path, url: str, link: Proc, home: Path) -> None:
    """Read the code ``link`` printed, wait until it waits, register ``home`` with it."""
    code = link.wait_for(lambda line: "code" in line)["code"]
    link.wait_for(lambda line: line.get("event") == "waiting")
    register(tmp_path, url, "bob", home, "--link-code", code)


def receive_all(tmp_path: Path, procs: list[Proc], home: Path) -> list[bytes]:
    """Run ``listen`` on the new device until it holds the N messages; its bodies."""
    listen = Proc(tmp_path, f"{home.name}-listen", ["listen", "--json", "--home", str(home)])
    procs.append(listen)
    while len(history_rows(home)) < N:
        listen.wait_for(lambda line: line.get("event") == "history" and line["added"] > 0)
        listen.lines.clear()
    assert listen.signal(signal.SIGINT) == 0
    return history_rows(home)


def test_link_sends_the_history_to_the_device_that_used_the_code(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data", name="link-history")
    procs.append(server.proc)
    bob1, bob2, bob3 = tmp_path / "bob1", tmp_path / "bob2", tmp_path / "bob3"
    register(tmp_path, server.url, "alice", tmp_path / "alice")
    register(tmp_path, server.url, "bob", bob1)
    fill(bob1)

    # this command runs the device: it waits for the ✓ of every part
    link = Proc(tmp_path, "link", ["link", "--send-history", "--json", "--home", str(bob1)])
    procs.append(link)
    link_then_register(tmp_path, server.url, link, bob2)
    assert link.wait_for(lambda line: line.get("event") == "linked")["device"] == "bob.2"
    queued = link.wait_for(lambda line: "parts" in line)
    assert queued["parts"] >= 3 and queued["device"] == "bob.2"
    link.wait_for(lambda line: line.get("event") == "sent")
    assert link.finish() == 0
    bodies = receive_all(tmp_path, procs, bob2)
    assert len(bodies) == N == len(set(bodies))  # every message once

    # through the daemon that runs bob.1: the daemon queues and sends it
    daemon = Proc(tmp_path, "bob1-daemon", ["daemon", "--json", "--home", str(bob1)])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "connected")
    link = Proc(tmp_path, "link-daemon", ["link", "--send-history", "--history-limit", "50",
                                           "--json", "--home", str(bob1)])  # fmt: skip
    procs.append(link)
    link_then_register(tmp_path, server.url, link, bob3)
    assert link.wait_for(lambda line: line.get("event") == "linked")["device"] == "bob.3"
    assert link.wait_for(lambda line: "parts" in line)["parts"] >= 1
    assert link.finish() == 0
    listen = Proc(tmp_path, "bob3-listen", ["listen", "--json", "--home", str(bob3)])
    procs.append(listen)
    while len(history_rows(bob3)) < 50:
        listen.wait_for(lambda line: line.get("event") == "history" and line["added"] > 0)
        listen.lines.clear()
    assert listen.signal(signal.SIGINT) == 0
    assert daemon.signal(signal.SIGINT) == 0
    assert len(history_rows(bob3)) == 50  # the newest 50 of the conversation, no more


def test_link_refuses_a_bad_history_limit_before_asking_for_a_code(tmp_path: Path) -> None:
    result = run(tmp_path, "link", "--send-history", "--history-limit", "0",
                 "--home", str(tmp_path / "nobody"))  # fmt: skip
    assert result.code == 2
    assert "--history-limit must be 1..10,000" in result.err
    assert not (tmp_path / "nobody").exists()  # nothing was created
