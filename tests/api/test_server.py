"""The local API over its real Unix socket, next to a running client: every method, the event
subscription, errors with their codes, and the limits (line length, unread bytes, connections)."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tidings.api.server as server_module
from tests.harness import ClientLab, Peer, RelayLab, is_received
from tidings.api import unixsock
from tidings.api.client import ApiClient
from tidings.api.methods import AMBIGUOUS, NOT_FOUND, RELAY_UNREACHABLE
from tidings.api.rpc import INVALID_PARAMS, INVALID_REQUEST, MAX_LINE, METHOD_NOT_FOUND, ApiError
from tidings.api.server import MAX_UNREAD_BYTES, SOCKET_NAME, ApiServer
from tidings.client import load_client_config

WAIT = 10.0


class World:
    """alice's device behind an API server, bob a plain SDK client."""

    def __init__(self, alice: Peer, bob: Peer, server: ApiServer) -> None:
        self.alice = alice
        self.bob = bob
        self.server = server
        self.apis: list[ApiClient] = []

    async def api(self) -> ApiClient:
        api = await ApiClient.open(self.alice.home)
        self.apis.append(api)
        return api


@pytest.fixture
async def world(relays: RelayLab, clients: ClientLab) -> AsyncIterator[World]:
    await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")
    server = ApiServer(alice.client, alice.home)
    await server.start()
    w = World(alice, bob, server)
    yield w
    for api in w.apis:
        await api.close()
    await server.close()


async def error_of(api: ApiClient, method: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as raised:
        await api.call(method, **params)
    return raised.value


async def test_the_socket_is_owner_only_and_goes_with_the_server(world: World) -> None:
    path = world.alice.home / SOCKET_NAME
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await world.server.close()
    assert not path.exists()
    with pytest.raises(OSError):
        await ApiClient.open(world.alice.home)


async def test_a_stale_socket_of_a_killed_daemon_is_replaced(world: World) -> None:
    await world.server.close()
    (world.alice.home / SOCKET_NAME).write_bytes(b"")  # what a kill -9 can leave (a file)
    again = ApiServer(world.alice.client, world.alice.home)
    await again.start()
    try:
        api = await ApiClient.open(world.alice.home)
        assert (await api.call("status"))["device"] == "alice.1"
        await api.close()
    finally:
        await again.close()


async def test_send_then_its_statuses_arrive_as_events(world: World) -> None:
    api = await world.api()
    assert await api.call("subscribe") == {"subscribed": True}
    mid = (await api.call("send", to="bob", text="hi bob"))["message_id"]
    assert len(mid) == 32
    got = await world.bob.until(is_received(bytes.fromhex(mid)))
    assert got.message.body == b"hi bob"  # type: ignore[union-attr]
    seen: list[dict[str, Any]] = []
    while not any(e["event"] == "status" and e["status"] == "delivered" for e in seen):
        seen.append(await api.next_event(WAIT))
    statuses = [e["status"] for e in seen if e["event"] == "status" and e["message_id"] == mid]
    assert statuses[:2] == ["sent", "delivered"]


async def test_incoming_messages_arrive_as_events_and_can_be_marked_read(world: World) -> None:
    api = await world.api()
    await api.call("subscribe")
    mid = await world.bob.client.send("alice", "hello alice")
    event = await api.next_event(WAIT)
    while event["event"] != "message":
        event = await api.next_event(WAIT)
    assert event["message_id"] == mid.hex() and event["from"] == "bob.1"
    assert event["body"] == "hello alice"
    assert await api.call("mark_read", message_ids=[mid.hex()[:8]]) == {"newly_read": 1}
    assert await api.call("mark_read", message_ids=[mid.hex()]) == {"newly_read": 0}
    assert await api.call("unsubscribe") == {"subscribed": False}


async def test_conversations_history_trace_status_devices_safety_settings(world: World) -> None:
    api = await world.api()
    mid = (await api.call("send", to="bob", text="one"))["message_id"]
    await world.bob.until(is_received(bytes.fromhex(mid)))
    reply = await world.bob.client.send("alice", "two")
    await world.alice.until(is_received(reply))

    (conv,) = await api.call("conversations")
    assert conv["conversation"] == "alice:bob" and conv["messages"] == 2 and conv["unread"] == 1
    history = await api.call("history", contact="bob")
    assert [(m["direction"], m["body"]) for m in history] == [("out", "one"), ("in", "two")]
    assert history[0]["to"] == "bob" and history[0]["status"] in ("sent", "delivered")
    assert await api.call("history", conversation="alice:bob", limit=1) == history[1:]
    # scrolling back: the page before a message (by id or prefix)
    older = await api.call("history", contact="bob", before=history[1]["message_id"][:10])
    assert older == history[:1]
    assert await api.call("history", contact="bob", before=mid) == []
    with pytest.raises(ApiError) as elsewhere:
        await api.call("history", conversation="alice:carol", before=mid)
    assert elsewhere.value.code == INVALID_PARAMS and "not a shown message" in str(elsewhere.value)

    trace = await api.call("trace", message_id=mid[:6] + "…")
    assert trace["message_id"] == mid
    assert [p["point"] for p in trace["points"]][:2] == ["composed", "written"]

    status = await api.call("status")
    assert status["device"] == "alice.1" and status["connected"] is True
    assert status["relay"] == world.alice.client.identity.server_url
    assert status["stopped"] is None

    assert await api.call("devices", account="bob") == {"account": "bob", "device_ids": [1]}
    assert await api.call("devices", account="nobody") == {"account": "nobody", "device_ids": []}
    number = await api.call("safety_number", account="bob")
    assert len(number["number"]) == 60 and number["verified"] is False
    assert await api.call("safety_number", account="carol") is None
    wrong = await api.call("safety_number", account="bob", verify="1" * 60)
    assert wrong["recorded"] is False and wrong["verified"] is False
    spaced = " ".join(number["number"][i : i + 5] for i in range(0, 60, 5))
    marked = await api.call("safety_number", account="bob", verify=spaced)
    assert marked["recorded"] is True and marked["verified"] is True
    assert (await api.call("safety_number", account="bob"))["verified"] is True
    dropped = await api.call("safety_number", account="bob", unverify=True)
    assert dropped["recorded"] is True and dropped["verified"] is False
    for bad in ({"verify": "1", "unverify": True}, {"unverify": False}, {"verify": ""}):
        with pytest.raises(ApiError) as refused:
            await api.call("safety_number", account="bob", **bad)
        assert refused.value.code == INVALID_PARAMS
    with pytest.raises(ApiError, match="no session with carol"):
        await api.call("safety_number", account="carol", verify="1" * 60)

    settings = await api.call("settings")
    assert settings["read_receipts"] is True
    assert settings["settings"]["read_receipts"] == {
        "value": True, "source": "stored", "where": None
    }  # fmt: skip
    assert settings["settings"]["outbox_window"] == {
        "value": 64,
        "source": "default",
        "where": None,
    }
    changed = await api.call("settings", read_receipts=False)
    assert changed["read_receipts"] is False
    assert changed["settings"]["read_receipts"]["value"] is False
    assert world.alice.client.identity.read_receipts is False


async def test_settings_report_a_configured_read_receipts_and_refuse_to_contradict_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    config = load_client_config(None, {"TIDINGS_CLIENT_READ_RECEIPTS": "off"})
    alice = await clients.new("alice", config=config)
    server = ApiServer(alice.client, alice.home)
    await server.start()
    api = await ApiClient.open(alice.home)
    try:
        settings = await api.call("settings")
        assert settings["read_receipts"] is False
        assert settings["settings"]["read_receipts"] == {
            "value": False, "source": "env", "where": "TIDINGS_CLIENT_READ_RECEIPTS"
        }  # fmt: skip
        assert (await api.call("status"))["read_receipts"] is False
        refused = await error_of(api, "settings", read_receipts=True)
        assert refused.code == INVALID_PARAMS
        assert refused.message == (
            "read receipts are set off by environment variable TIDINGS_CLIENT_READ_RECEIPTS, "
            "which wins over the device's stored setting: change it there"
        )
        assert alice.client.identity.read_receipts is True  # nothing stored
        assert (await api.call("settings", read_receipts=False))["read_receipts"] is False
    finally:
        await api.close()
        await server.close()


async def test_errors_have_their_codes_and_change_nothing(world: World) -> None:
    api = await world.api()
    before = world.alice.client.store.conversations()
    assert (await error_of(api, "nope")).code == METHOD_NOT_FOUND
    assert (await error_of(api, "send", to="Not A Name", text="x")).code == INVALID_PARAMS
    assert (await error_of(api, "send", to="bob")).code == INVALID_PARAMS
    assert (await error_of(api, "send", to="bob", text="x", cc="carol")).code == INVALID_PARAMS
    assert (await error_of(api, "send", to="bob", text="x" * 70_000)).code == INVALID_PARAMS
    assert (await error_of(api, "history")).code == INVALID_PARAMS
    assert (await error_of(api, "history", contact="bob", limit=0)).code == INVALID_PARAMS
    assert (await error_of(api, "trace", message_id="zz")).code == INVALID_PARAMS
    assert (await error_of(api, "trace", message_id="0000")).code == NOT_FOUND
    assert (await error_of(api, "mark_read", message_ids=[])).code == INVALID_PARAMS
    assert (await error_of(api, "settings", read_receipts="yes")).code == INVALID_PARAMS
    assert world.alice.client.store.conversations() == before

    api.send_raw(b"{oops\n")
    assert (await api.next_answer(WAIT))["error"]["code"] == -32700
    api.send_line({"jsonrpc": "2.0", "id": "q", "method": 5})
    answer = await api.next_answer(WAIT)
    assert answer["id"] == "q" and answer["error"]["code"] == INVALID_REQUEST
    api.send_line({"jsonrpc": "2.0", "method": "status"})  # a notification: no answer
    assert (await api.call("status"))["device"] == "alice.1"  # the next answer is this one


async def test_an_ambiguous_prefix_names_candidates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await world.api()
    real = os.urandom
    # A message id's random part (its first 10 bytes: tidings.delivery.msgids) made to start alike.
    monkeypatch.setattr(os, "urandom", lambda n: b"\xab\xcd" + real(n - 2) if n == 10 else real(n))
    ids = [(await api.call("send", to="bob", text=f"m{i}"))["message_id"] for i in range(2)]
    monkeypatch.setattr(os, "urandom", real)
    assert ids[0][:4] == ids[1][:4] == "abcd"
    error = await error_of(api, "trace", message_id="abcd")
    assert error.code == AMBIGUOUS and sorted(error.data["candidates"]) == sorted(ids)
    trace = await api.call("trace", message_id=ids[1][:12])  # longer: unique again
    assert trace["message_id"] == ids[1]


async def test_a_method_that_needs_the_relay_fails_fast_when_it_is_down(
    world: World, relays: RelayLab
) -> None:
    api = await world.api()
    await relays.relays[-1].stop()
    await world.alice.until(lambda e: type(e).__name__ == "ConnectFailed", WAIT)
    error = await error_of(api, "devices", account="bob")
    assert error.code == RELAY_UNREACHABLE and "connection refused" in error.data["reason"]
    sent = await api.call("send", to="bob", text="queued while down")  # still durable
    assert world.alice.client.store.outbox_item(bytes.fromhex(sent["message_id"])) is not None


async def test_a_line_over_the_limit_is_refused_and_the_connection_closed(world: World) -> None:
    api = await world.api()
    api.send_raw(b"{" + b" " * MAX_LINE + b"}\n")
    answer = await api.next_answer(WAIT)
    assert answer["error"]["code"] == INVALID_REQUEST and "too long" in answer["error"]["message"]
    await api.wait_closed(WAIT)
    fresh = await world.api()  # the server itself is fine
    assert (await fresh.call("status"))["device"] == "alice.1"


async def test_connections_are_capped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_API_CLIENTS", 2)
    first, second = await world.api(), await world.api()
    assert (await first.call("status"))["device"] == (await second.call("status"))["device"]
    third = await world.api()
    answer = await third.next_answer(WAIT)
    assert "too many API connections" in answer["error"]["message"]
    await third.wait_closed(WAIT)


class _Transport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered


class _Writer:
    def __init__(self, buffered: int) -> None:
        self.transport = _Transport(buffered)
        self.written: list[bytes] = []
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def test_a_client_that_stops_reading_is_cut_off_at_the_unread_limit() -> None:
    """Answers and events wait in the transport's buffer for a client that does not read; past
    MAX_UNREAD_BYTES the connection is closed instead of growing without end."""
    line = b"x" * 100 + b"\n"
    fine = _Writer(MAX_UNREAD_BYTES - len(line))
    conn = server_module._Connection(None, None, fine)  # type: ignore[arg-type]
    conn._write(line)
    assert fine.written == [line] and not fine.closed
    full = _Writer(MAX_UNREAD_BYTES - len(line) + 1)
    conn = server_module._Connection(None, None, full)  # type: ignore[arg-type]
    conn._write(line)
    assert full.written == [] and full.closed


def test_socket_paths_longer_than_sun_path_work(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / SOCKET_NAME
    assert len(os.fsencode(path)) > 108
    listener = unixsock.bind(path)
    try:
        client = unixsock.connect(path)
        conn, _ = listener.accept()
        client.sendall(b"ping")
        conn.setblocking(True)
        assert conn.recv(4) == b"ping"
        conn.close()
        client.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        listener.close()


async def test_unseen_messages_until_a_ui_marks_them_seen(world: World) -> None:
    api = await world.api()
    mid = await world.bob.client.send("alice", "for a ui")
    await world.alice.until(is_received(mid))
    (unseen,) = await api.call("unseen")
    assert unseen["message_id"] == mid.hex() and unseen["seen_at"] is None
    assert await api.call("mark_seen", message_ids=[mid.hex()[:10]]) == {"newly_seen": 1}
    assert await api.call("unseen") == []
    (shown,) = await api.call("history", contact="bob")
    assert shown["seen_at"] is not None
    assert (await error_of(api, "mark_seen", message_ids="x")).code == INVALID_PARAMS
