"""A relay known by several URLs (its nodes): which one each attempt goes to, with literal
``now`` values (:mod:`tidings.client.relays`), through the connection core, and as stored in the
device's home (an old home with one URL keeps working)."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

import tidings.client.relays as relays_module
from tidings.client.core import ConnectionCore, OpenConnection, State
from tidings.client.relays import (
    MAX_RELAY_URLS,
    RETURN_TO_PREFERRED_AFTER,
    RelayNodes,
    check_url,
    parse_relay_urls,
)
from tidings.client.store import ClientStore, Identity
from tidings.errors import ConfigError, StoreError
from tidings.wire import PROTOCOL_VERSION, Devices, GetDevices, Hello, Welcome

A, B, C = "ws://a:7400/v1", "ws://b:7400/v1", "wss://c.example/v1"
KEY = b"K" * 32


# ---------------------------------------------------------------- the plan alone


def test_one_url_is_always_the_current_one() -> None:
    nodes = RelayNodes([A])
    for now in (0.0, 1.0, 1000.0):
        nodes.attempt_failed(now)
        nodes.session_ended(now)
        assert nodes.current == A and nodes.away_since is None


def test_a_failed_attempt_moves_to_the_next_url_and_wraps_around() -> None:
    nodes = RelayNodes([A, B, C])
    assert nodes.current == A
    nodes.attempt_failed(10.0)
    assert nodes.current == B and nodes.away_since == 10.0
    nodes.attempt_failed(11.0)
    assert nodes.current == C and nodes.away_since == 10.0  # away since it left A
    nodes.attempt_failed(12.0)
    assert nodes.current == A and nodes.away_since is None  # back on the preferred


def test_a_session_that_ended_tries_the_same_node_once_more() -> None:
    nodes = RelayNodes([A, B])
    nodes.session_ended(100.0)  # a blip on the preferred node: stay
    assert nodes.current == A
    nodes.attempt_failed(101.0)  # it is down: the next one
    assert nodes.current == B
    nodes.session_ended(200.0)  # 99 s away: stay on B
    assert nodes.current == B


def test_back_to_the_preferred_url_when_a_session_ends_long_enough_after_leaving_it() -> None:
    nodes = RelayNodes([A, B])
    nodes.attempt_failed(1000.0)
    assert nodes.current == B
    nodes.session_ended(1000.0 + RETURN_TO_PREFERRED_AFTER - 0.001)
    assert nodes.current == B  # not yet
    nodes.session_ended(1000.0 + RETURN_TO_PREFERRED_AFTER)
    assert nodes.current == A and nodes.away_since is None
    nodes.attempt_failed(1400.0)  # still down: B again, away counted from now
    assert nodes.current == B and nodes.away_since == 1400.0


@pytest.mark.parametrize(
    ("urls", "why"),
    [([], "at least one"), ([A, A], "twice"), ([f"ws://n{i}/v1" for i in range(17)], "at most")],
)
def test_a_bad_list_cannot_be_built(urls: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        RelayNodes(urls)


def test_parse_relay_urls_takes_repeats_and_commas_in_order() -> None:
    assert parse_relay_urls([A]) == (A,)
    assert parse_relay_urls([f"{A}, {B}", C]) == (A, B, C)
    assert parse_relay_urls([f"{A},,", " "]) == (A,)


@pytest.mark.parametrize(
    ("texts", "why"),
    [
        ([], "give the relay URL"),
        (["", " , "], "give the relay URL"),
        (["http://a:7400/v1"], "must look like ws://host:port/v1, not 'http://a:7400/v1'"),
        (["ws://:7400/v1"], "must look like"),
        (["ws://a:99999/v1"], "must look like"),
        (["ws://a:x/v1"], "must look like"),
        ([A, f"{B},{A}"], f"given twice: {A}"),
        ([",".join(f"ws://n{i}/v1" for i in range(MAX_RELAY_URLS + 1))], "load balancer"),
    ],
)
def test_parse_relay_urls_refuses_bad_input_in_one_line(texts: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match=why.replace("?", r"\?")) as info:
        parse_relay_urls(texts)
    assert "\n" not in str(info.value)


def test_check_url_returns_a_good_url() -> None:
    assert check_url(C) == C


def test_the_plan_does_no_io() -> None:
    tree = ast.parse(Path(relays_module.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
    }
    assert imported <= {"__future__", "collections.abc", "urllib.parse"}


# ---------------------------------------------------------------- through the connection core


def open_on(core: ConnectionCore, now: float) -> None:
    """Complete the attempt the core asked for: handshake, WELCOME, DEVICES."""
    core.handshake_done(KEY, "IK", now)
    (hello,) = core.frames_to_send()
    assert isinstance(hello, Hello)
    core.frame_received(Welcome("bob", 1, 1000.0, 86400.0, 65536, 0, hello.cursor), now)
    (query,) = core.frames_to_send()
    assert isinstance(query, GetDevices)
    core.frame_received(Devices(query.request_id, "bob", (1,)), now)
    assert core.state is State.OPEN


def opened_url(core: ConnectionCore) -> str:
    (action,) = [a for a in core.actions() if isinstance(a, OpenConnection)]
    return action.url


def test_the_core_fails_over_to_the_next_node_and_resumes_from_its_cursor() -> None:
    core = ConnectionCore("bob", A, KEY, cursor=7, rng=lambda: 0.5, alternates=(B,))
    core.start(0.0)
    assert opened_url(core) == A
    open_on(core, 0.0)
    core.committed(1.0)
    # The node is killed (the session lasted): the same node first, after the backoff.
    core.connection_lost(0, "connection lost", False, 60.0)
    assert core.state is State.BACKOFF and core.server_url == A
    deadline = core.next_deadline()
    assert deadline is not None and deadline == pytest.approx(60.25)  # ≤ 0.5 s, jitter 0.5
    core.handle_timer(deadline)
    assert opened_url(core) == A
    core.connect_failed("connection refused by a:7400 (is the relay running?)", deadline)
    deadline = core.next_deadline()
    assert deadline is not None and core.server_url == B
    core.handle_timer(deadline)
    assert opened_url(core) == B
    core.handshake_done(KEY, "IK", deadline)
    assert core.frames_to_send() == [
        Hello(PROTOCOL_VERSION, 7)
    ]  # the committed cursor, whichever node


def test_a_close_before_the_session_opened_counts_as_a_failed_attempt() -> None:
    core = ConnectionCore("bob", A, KEY, rng=lambda: 0.5, alternates=(B, C))
    core.start(0.0)
    core.actions()
    core.handshake_done(KEY, "IK", 0.0)
    core.connection_lost(0, "connection lost", False, 0.1)  # before WELCOME
    assert core.server_url == B
    core.reconnect_now(0.2)
    assert opened_url(core) == B


def test_a_node_with_another_key_is_refused_as_another_relay() -> None:
    core = ConnectionCore("bob", A, KEY, rng=lambda: 0.5, alternates=(B,))
    core.start(0.0)
    core.actions()
    core.connect_failed("refused", 0.0)
    core.reconnect_now(0.1)
    assert opened_url(core) == B
    core.handshake_done(b"O" * 32, "XX", 0.2)
    assert core.state is State.FATAL
    assert core.fatal is not None and f"the relay at {B}" in core.fatal.reason
    assert "server.key" in core.fatal.reason


# ---------------------------------------------------------------- stored in the home


def identity(*others: str) -> Identity:
    return Identity(bytes(32), "alice", 1, "laptop", A, KEY, alternate_urls=tuple(others))


def test_the_urls_are_stored_in_order_and_replaced_whole(tmp_path: Path) -> None:
    with ClientStore(tmp_path / "client.db") as store:
        with pytest.raises(StoreError, match="no identity"):
            store.set_relay_urls([A])
        store.save_identity(identity(B, C))
        got = store.get_identity()
        assert got is not None and got.server_urls == (A, B, C)
        store.set_relay_urls([C, A])
        got = store.get_identity()
        assert got is not None and got.server_url == C and got.alternate_urls == (A,)
        with pytest.raises(StoreError, match="at least one"):
            store.set_relay_urls([])
        assert store.get_identity() == got  # unchanged


def test_a_home_from_before_several_urls_keeps_its_one_url(tmp_path: Path) -> None:
    from tidings.client.migrations import MIGRATIONS
    from tidings.client.store._sql import statements

    path = tmp_path / "client.db"
    db = sqlite3.connect(path, isolation_level=None)
    for n, script in enumerate(MIGRATIONS[:8], 1):  # v8: the schema before relay_urls
        for stmt in statements(script):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {n}")
    db.execute(
        "INSERT INTO identity VALUES (1, ?, 'alice', 1, 'laptop', ?, ?, 1)", (bytes(32), A, KEY)
    )
    db.close()
    with ClientStore(path) as store:
        got = store.get_identity()
        assert got is not None and got.server_urls == (A,) and got.server_key == KEY
        store.set_relay_urls([A, B])
        got = store.get_identity()
        assert got is not None and got.server_urls == (A, B)


def test_the_core_goes_back_to_the_preferred_node_only_when_a_session_ends() -> None:
    core = ConnectionCore("bob", A, KEY, rng=lambda: 0.5, alternates=(B,))
    core.start(0.0)
    core.actions()
    core.connect_failed("refused", 0.0)  # A is down: B
    core.reconnect_now(0.1)
    assert opened_url(core) == B
    open_on(core, 0.1)
    core.actions()
    later = RETURN_TO_PREFERRED_AFTER + 1.0
    core.committed(later)  # a working session on B is never cut to go back
    assert core.state is State.OPEN and core.actions() == []
    core.connection_lost(0, "connection lost", False, later)
    core.reconnect_now(later)
    assert opened_url(core) == A  # the next attempt tries the preferred one first
