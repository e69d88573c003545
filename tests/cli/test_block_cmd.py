"""``tidings block`` / ``tidings unblock``, as a user runs them: real processes on a module
relay of test_cli's kind (a relay of its own: this module's instance of the ``relay`` fixture)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import Relay, ok, relay, run

pytestmark = [pytest.mark.proc, pytest.mark.slow]

__all__ = ["relay"]  # the fixture, imported so this module gets its own relay


def test_block_lists_and_unblocks(relay: Relay) -> None:
    root, alice = relay.root, relay.alice
    assert ok(root, "block", "--home", str(alice)).out == "nobody is blocked\n"
    assert ok(root, "block", "bob", "--home", str(alice)).out == "blocked bob\n"
    assert ok(root, "block", "bob", "--home", str(alice)).out == "bob was blocked already\n"
    (listed,) = ok(root, "block", "--json", "--home", str(alice)).json_lines()
    assert listed == {"blocked": ["bob"]}
    assert ok(root, "unblock", "bob", "--home", str(alice)).out == "unblocked bob\n"
    assert ok(root, "unblock", "bob", "--home", str(alice)).out == "bob was not blocked\n"
    assert ok(root, "block", "--home", str(alice)).out == "nobody is blocked\n"
    bad = run(root, "block", "no:such", "--home", str(alice))
    assert bad.code == 2
    helped = ok(root, "block", "--help").out
    assert "ACCESS" not in helped and "sealed" in helped
