"""A device linked after its account's group was made lists the group (issue 12), as a user
runs it: ``tidings link`` through the daemon of alice.1, alice.2 registers with the code,
``tidings listen`` on alice.2 hears of the group (alice.1's GROUP_SYNC), ``tidings group list``
shows it. Real processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.test_cli import Proc, Server, ok, register

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def test_a_device_linked_after_a_group_lists_it(tmp_path: Path, procs: list[Proc]) -> None:
    server = Server(tmp_path, tmp_path / "data", name="group-late")
    procs.append(server.proc)
    alice1, alice2, bob = tmp_path / "alice1", tmp_path / "alice2", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice1)
    register(tmp_path, server.url, "bob", bob)
    (made,) = ok(
        tmp_path, "group", "create", "climbers", "--with", "bob", "--json", "--home", str(alice1)
    ).json_lines()

    daemon = Proc(tmp_path, "alice1-daemon", ["daemon", "--json", "--home", str(alice1)])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "connected")
    lines = ok(tmp_path, "link", "--no-qr", "--json", "--home", str(alice1)).json_lines()
    code = next(line["code"] for line in lines if "code" in line)
    register(tmp_path, server.url, "alice", alice2, "--link-code", code)

    listen = Proc(tmp_path, "alice2-listen", ["listen", "--json", "--home", str(alice2)])
    procs.append(listen)
    told = listen.wait_for(lambda line: line.get("event") == "group")
    assert told["group_id"] == made["group_id"] and told["member"] is True
    assert listen.signal(signal.SIGINT) == 0
    assert daemon.signal(signal.SIGINT) == 0

    listed = ok(tmp_path, "group", "list", "--home", str(alice2)).out
    assert listed.startswith(f"climbers ({made['group_id']}): alice, bob; admins alice")
    assert listed == ok(tmp_path, "group", "list", "--home", str(alice1)).out
