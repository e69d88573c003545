"""Several relay URLs from the command line (issue 14): ``register --server`` repeated or
comma-separated, ``tidings relays`` to show and replace them, ``tidings config`` showing them;
a bad URL is one line and changes nothing. Real processes, a relay of this module's own."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import Relay, ok, one_line_error, relay, run
from tests.proc.harness import free_port
from tidings.cli.exits import Exit
from tidings.client.lock import DeviceLock

pytestmark = [pytest.mark.proc, pytest.mark.slow]

__all__ = ["relay"]  # the fixture, imported so this module gets its own relay


def relays_of(relay: Relay, home: str) -> list[str]:
    (line,) = ok(relay.root, "relays", "--home", home, "--json").json_lines()
    urls: list[str] = line["relays"]
    return urls


def test_register_keeps_every_url_and_registers_at_the_first_reachable(relay: Relay) -> None:
    root = relay.root
    dead = f"ws://127.0.0.1:{free_port()}/v1"  # nothing listens: the next URL is used
    home = str(root / "carol")
    got = ok(root, "register", "carol", "--server", f"{dead},{relay.url}", "--home", home)
    assert "registered carol.1" in got.out
    assert relays_of(relay, home) == [dead, relay.url]
    assert ok(root, "relays", "--home", home).out == f"{dead}\n{relay.url}\n"
    (config,) = ok(root, "config", "--home", home, "--json").json_lines()
    assert config["relays"] == [dead, relay.url]
    assert f"relays: {dead}, {relay.url} (tidings relays)" in ok(root, "config", "--home", home).out
    # The device connects through the dead one to the live one: a message arrives.
    ok(root, "send", "carol", "hello nodes", "--home", str(relay.alice), "--wait", "sent")
    listened = ok(root, "listen", "--count", "1", "--home", home, "--json").json_lines()
    assert listened[0]["event"] == "connecting" and listened[0]["urls"] == [dead, relay.url]
    assert any(line.get("body") == "hello nodes" for line in listened)


def test_a_bad_url_at_registration_creates_nothing(relay: Relay) -> None:
    root = relay.root
    home = root / "dave"
    for bad, why in [
        ("http://h:1/v1", "must look like ws://host:port/v1, not 'http://h:1/v1'"),
        (f"{relay.url},{relay.url}", "relay URL given twice"),
    ]:
        result = run(
            root, "register", "dave", "--server", relay.url, "--server", bad, "--home", str(home)
        )
        assert why in one_line_error(result)
        assert not home.exists()


def test_relays_replaces_the_list_and_a_bad_one_changes_nothing(relay: Relay) -> None:
    root, home = relay.root, str(relay.bob)
    assert relays_of(relay, home) == [relay.url]  # registered with one URL
    other = "ws://node-b.example:7400/v1"
    (line,) = ok(root, "relays", relay.url, other, "--home", home, "--json").json_lines()
    assert line == {"relays": [relay.url, other]}
    for bad in (["wss://"], [other, relay.url, other], ["ws://a:1/v1 ws://b:1/v1"]):
        assert one_line_error(run(root, "relays", *bad, "--home", home))
        assert relays_of(relay, home) == [relay.url, other]
    lock = DeviceLock.acquire(relay.bob, "a test holding the device")
    try:
        busy = run(root, "relays", relay.url, "--home", home)
    finally:
        lock.release()
    assert busy.code == Exit.DEVICE_BUSY and "stop it first" in busy.err
    assert relays_of(relay, home) == [relay.url, other]
    ok(root, "relays", relay.url, "--home", home)  # back to one, for the other tests
    assert relays_of(relay, home) == [relay.url]


def test_relays_on_a_home_without_a_device_says_so(relay: Relay) -> None:
    result = run(relay.root, "relays", "--home", str(relay.root / "nobody"))
    assert "holds no registered device" in one_line_error(result)
