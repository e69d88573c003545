"""The client's settings: defaults, the TOML file, ``TIDINGS_CLIENT_*``, ``--set``, precedence,
and the one-line errors (with literal environments and files under ``tmp_path``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.harness import ClientLab, RelayLab, is_received
from tidings.client import ClientConfig, load_client_config
from tidings.client.config import (
    CONFIG_ENV,
    SETTINGS,
    check_read_receipts,
    config_path,
    parse_sets,
)
from tidings.client.connect import CLIENT_KEEPALIVE
from tidings.delivery import OUTBOX_WINDOW, RETRY_BASE, RETRY_CAP
from tidings.errors import ConfigError
from tidings.server.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_defaults_are_the_values_the_client_had() -> None:
    c = ClientConfig()
    assert c.keepalive == CLIENT_KEEPALIVE
    assert (c.reconnect_initial_seconds, c.reconnect_max_seconds) == (0.5, 30.0)
    assert (c.outbox_window, c.outbox_retry) == (OUTBOX_WINDOW, (RETRY_BASE, RETRY_CAP))
    assert c.read_receipts is None  # the stored setting decides
    assert all(d["source"] == "default" for d in c.describe().values())
    assert load_client_config(None, {}) == c


def test_a_file_sets_values_with_durations_and_says_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[client]\nkeepalive_seconds = 15\nkeepalive_timeout_seconds = "1m"\n'
        'reconnect_max_seconds = "2m"\noutbox_window = 8\nread_receipts = false\n',
    )
    c = load_client_config(path, {})
    assert c.keepalive_seconds == 15.0 and isinstance(c.keepalive_seconds, float)
    assert c.keepalive_timeout_seconds == 60.0 and c.reconnect_max_seconds == 120.0
    assert c.outbox_window == 8 and c.read_receipts is False
    assert c.source("outbox_window") == f"file {path}"
    assert c.source("reconnect_initial_seconds") == "default"
    assert c.describe()["read_receipts"] == {"value": False, "source": "file", "where": str(path)}


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[client]\noutbox_window = 2\nreconnect_max_seconds = 3\n")
    env = {
        "TIDINGS_CLIENT_OUTBOX_WINDOW": "5",
        "TIDINGS_CLIENT_RECONNECT_MAX_SECONDS": "4s",
        "TIDINGS_CLIENT_READ_RECEIPTS": "off",
    }
    c = load_client_config(path, env, {"outbox_window": "7"})
    assert c.outbox_window == 7 and c.source("outbox_window") == "flag --set outbox_window"
    assert c.reconnect_max_seconds == 4.0
    assert c.source("reconnect_max_seconds") == "env TIDINGS_CLIENT_RECONNECT_MAX_SECONDS"
    assert c.read_receipts is False
    assert c.keepalive_seconds == 5.0 and c.source("keepalive_seconds") == "default"


@pytest.mark.parametrize(
    ("text", "value"),
    [("on", True), ("TRUE", True), ("yes", True), ("1", True), ("off", False), (" no ", False)],
)
def test_read_receipts_in_text(text: str, value: bool) -> None:
    assert load_client_config(None, {"TIDINGS_CLIENT_READ_RECEIPTS": text}).read_receipts is value


def test_the_relays_variables_are_not_the_clients_and_back() -> None:
    env = {"TIDINGS_PORT": "1", "TIDINGS_HOME": "/x", CONFIG_ENV: "/y"}
    assert load_client_config(None, env) == ClientConfig()
    relay = load_config(None, {"TIDINGS_CLIENT_KEEPALIVE_SECONDS": "2", "TIDINGS_PORT": "9"}, {})
    assert relay.port == 9  # a client's variable in the relay's shell is not a typo


def test_config_path_flag_then_env_then_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert config_path(home, None, {}) is None  # no file: the defaults
    (home / "config.toml").write_text("")
    assert config_path(home, None, {}) == home / "config.toml"
    assert config_path(home, None, {CONFIG_ENV: "/etc/t.toml"}) == Path("/etc/t.toml")
    assert config_path(home, "/a.toml", {CONFIG_ENV: "/etc/t.toml"}) == Path("/a.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[client]\nkeepalive = 3\n", "[client] keepalive: unknown setting; did you mean"),
        ("[clinet]\n", "unknown top-level key 'clinet'; settings go in [client]"),
        ("client = 3\n", "'client' must be a table ([client])"),
        ("[client\n", "invalid TOML"),
        ("[client]\noutbox_window = 0\n", "outbox_window: must be from 1 to 1024, got 0"),
        ("[client]\noutbox_window = 2.5\n", "outbox_window: expected an integer, got 2.5"),
        ('[client]\nread_receipts = "no"\n', "read_receipts: expected true or false, got 'no'"),
        ("[client]\nkeepalive_seconds = -1\n", "keepalive_seconds: must be a finite number"),
        ('[client]\nkeepalive_seconds = "soon"\n', "expected seconds (a number, or e.g."),
        ("[client]\nkeepalive_seconds = true\n", "keepalive_seconds: expected seconds"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_client_config(path, {})
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope.toml"):
        load_client_config(tmp_path / "nope.toml", {})


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        (
            {"TIDINGS_CLIENT_KEEPALIVE_SECOND": "3"},
            {},
            "environment variable TIDINGS_CLIENT_KEEPALIVE_SECOND: unknown setting; "
            "did you mean TIDINGS_CLIENT_KEEPALIVE_SECONDS?",
        ),
        (
            {"TIDINGS_CLIENT_OUTBOX_WINDOW": "many"},
            {},
            "environment variable TIDINGS_CLIENT_OUTBOX_WINDOW: expected an integer, got 'many'",
        ),
        (
            {"TIDINGS_CLIENT_READ_RECEIPTS": "maybe"},
            {},
            "environment variable TIDINGS_CLIENT_READ_RECEIPTS: expected on or off",
        ),
        ({}, {"reconect_max_seconds": "1"}, "--set reconect_max_seconds: unknown setting; did"),
        ({}, {"reconnect_max_seconds": "0"}, "--set reconnect_max_seconds: must be a finite"),
        ({}, {"outbox_window": "2000"}, "--set outbox_window: must be from 1 to 1024"),
        (
            {"TIDINGS_CLIENT_KEEPALIVE_SECONDS": "10"},
            {},
            "keepalive_seconds (10, from environment variable TIDINGS_CLIENT_KEEPALIVE_SECONDS) "
            "must be less than keepalive_timeout_seconds (10, from the default)",
        ),
    ],
)
def test_bad_env_and_flags_are_one_line_naming_the_source(
    env: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_client_config(None, env, overrides)
    assert message in str(raised.value)


def test_an_invalid_config_cannot_be_built_or_replaced() -> None:
    with pytest.raises(ConfigError, match="outbox_window"):
        ClientConfig(outbox_window=0)
    with pytest.raises(ConfigError, match="must be less than"):
        dataclasses.replace(ClientConfig(), keepalive_timeout_seconds=5.0)
    with pytest.raises(ConfigError, match="read_receipts"):
        ClientConfig(read_receipts="on")  # type: ignore[arg-type]


def test_a_backoff_cap_below_its_first_delay_caps_every_delay() -> None:
    c = ClientConfig(reconnect_max_seconds=0.01, outbox_retry_max_seconds=0.2)
    assert c.reconnect == (0.01, 0.01) and c.outbox_retry == (0.2, 0.2)


def test_parse_sets() -> None:
    assert parse_sets(["outbox-window=3", "read_receipts=off", "outbox_window=4"]) == {
        "outbox_window": "4",
        "read_receipts": "off",
    }
    assert parse_sets(None) == {}
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_sets(["outbox_window"])


def test_a_configured_read_receipts_refuses_the_other_stored_value() -> None:
    check_read_receipts(ClientConfig(), False)  # not set: the stored setting is the one
    pinned = load_client_config(None, {}, {"read_receipts": "on"})
    check_read_receipts(pinned, True)  # the same value: nothing to refuse
    with pytest.raises(ConfigError) as raised:
        check_read_receipts(pinned, False)
    assert str(raised.value) == (
        "read receipts are set on by --set read_receipts, which wins over the device's stored "
        "setting: change it there"
    )


async def test_the_client_runs_with_its_config(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start()
    config = ClientConfig(
        keepalive_seconds=1.0,
        keepalive_timeout_seconds=3.0,
        reconnect_initial_seconds=0.1,
        reconnect_max_seconds=0.2,
        outbox_window=3,
        outbox_retry_max_seconds=7.0,
        read_receipts=False,
    )
    bob = await clients.new("bob")
    alice = await clients.new("alice", config=config)
    client = alice.client
    assert client.config is config
    assert client._session._keepalive == config.keepalive
    assert client._session.core.backoff._policy.cap == 0.2
    assert client._outbox.scheduler.window == 3
    assert client._outbox.scheduler.policy.cap == 7.0

    mid = await bob.client.send("alice", "hello")
    await alice.until(is_received(mid))
    assert client.identity.read_receipts is True  # stored: on
    assert client.read_receipts is False  # the config wins
    assert client.settings()["read_receipts"] == {"value": False, "source": "code", "where": None}
    assert await client.drain(10.0)  # the delivered receipt went out
    await client.mark_read([mid])
    assert client.outbox_size == 0  # no read receipt was queued
    with pytest.raises(ConfigError, match="read receipts are set off"):
        client.set_read_receipts(True)
    assert client.store.get_identity().read_receipts is True  # type: ignore[union-attr]


def test_the_readme_table_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Client configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`(\w+)`", row.split(" | ")[0])}
    assert named == set(SETTINGS)
