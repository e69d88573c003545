"""``tidings group``, as a user runs it: real processes on a module relay of test_cli's kind."""

from __future__ import annotations

import signal

import pytest

from tests.cli.test_cli import Proc, Relay, ok, relay, run

pytestmark = [pytest.mark.proc, pytest.mark.slow]

__all__ = ["relay"]  # the fixture, imported so this module gets its own relay


def test_a_group_is_created_chatted_in_and_shown(relay: Relay, procs: list[Proc]) -> None:
    root, alice, bob = relay.root, relay.alice, relay.bob
    listen = Proc(root, "bob-listen-group", ["listen", "--json", "--home", str(bob)])
    procs.append(listen)
    listen.wait_for(lambda line: line.get("event") == "connected")

    (made,) = ok(
        root, "group", "create", "climbers", "--with", "bob", "--json", "--home", str(alice)
    ).json_lines()
    assert made["name"] == "climbers" and made["members"] == ["alice", "bob"]
    assert made["admins"] == ["alice"]
    told = listen.wait_for(lambda line: line.get("event") == "group")
    assert told["group_id"] == made["group_id"] and told["member"] is True

    ok(root, "group", "send", "climbers", "rope at 9", "--home", str(alice))
    got = listen.wait_for(lambda line: line.get("body") == "rope at 9")
    assert got["conversation"] == made["conversation"] and got["from"] == "alice.1"
    ok(root, "send", "@climbers", "and snacks", "--home", str(alice))  # the same, by send
    listen.wait_for(lambda line: line.get("body") == "and snacks")
    assert listen.signal(signal.SIGINT) == 0

    listed = ok(root, "group", "list", "--home", str(bob)).out
    assert listed.startswith(f"climbers ({made['group_id']}): alice, bob; admins alice")
    history = ok(root, "history", "@climbers", "--home", str(alice)).out
    assert "me › rope at 9" in history and "delivered to " in history
    sent = ok(root, "history", "@climbers", "--json", "--home", str(alice)).json_lines()
    assert [m["body"] for m in sent] == ["rope at 9", "and snacks"]
    assert sent[0]["group_status"]["members"] == 1
    assert sent[0]["group_status"]["sent_devices"] == 1

    refused = run(root, "group", "add", "climbers", "carol", "--home", str(bob))
    assert refused.code != 0 and "bob is not an admin" in refused.err  # nothing changed
    missing = run(root, "group", "info", "nope", "--home", str(bob))
    assert missing.code != 0 and "no group 'nope'" in missing.err
