"""``tidings timer``, as a user runs it: real processes on the module relay of test_cli's kind
(a relay of its own: this module's instance of the ``relay`` fixture)."""

from __future__ import annotations

import signal

import pytest

from tests.cli.test_cli import Proc, Relay, ok, relay, run

pytestmark = [pytest.mark.proc, pytest.mark.slow]

__all__ = ["relay"]  # the fixture, imported so this module gets its own relay


def test_a_timer_is_set_shown_and_makes_messages_disappear(relay: Relay, procs: list[Proc]) -> None:
    root, alice, bob = relay.root, relay.alice, relay.bob
    listen = Proc(root, "bob-listen-timer", ["listen", "--json", "--home", str(bob)])
    procs.append(listen)
    listen.wait_for(lambda line: line.get("event") == "connected")
    off = ok(root, "timer", "bob", "--home", str(alice)).out
    assert off == "disappearing messages in alice:bob: off\n"

    (set_,) = ok(root, "timer", "bob", "1h", "--json", "--home", str(alice)).json_lines()
    assert set_["seconds"] == 3600 and set_["set_by"] == "alice.1"
    got = listen.wait_for(lambda line: line.get("event") == "timer")
    assert got["seconds"] == 3600 and got["by"] == "alice.1"
    assert got["conversation"] == "alice:bob"

    ok(root, "send", "bob", "vanishing", "--home", str(alice))
    message = listen.wait_for(lambda line: line.get("body") == "vanishing")
    assert message["expires_in"] == 3600
    assert listen.signal(signal.SIGINT) == 0
    history = ok(root, "history", "alice", "--json", "--home", str(bob)).json_lines()
    (stored,) = [m for m in history if m["body"] == "vanishing"]
    assert stored["expires_in"] == 3600 and stored["expires_at"] is not None  # listen showed it
    shown = ok(root, "timer", "alice", "--home", str(bob)).out
    assert shown.startswith("disappearing messages in alice:bob: 1h (set by alice.1 at ")

    bad = run(root, "timer", "bob", "5y", "--home", str(alice))
    assert bad.code == 2 and "not a duration" in bad.err
    too_long = run(root, "timer", "bob", "5w", "--home", str(alice))
    assert too_long.code == 2 and "longer than 4w" in too_long.err
    assert ok(root, "timer", "bob", "--home", str(alice)).out.startswith(
        "disappearing messages in alice:bob: 1h"
    )  # the refused ones changed nothing
    turned_off = ok(root, "timer", "bob", "off", "--home", str(alice)).out  # for the next tests
    assert turned_off.startswith("disappearing messages in alice:bob: off (turned off by alice.1")
