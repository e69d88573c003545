"""Sealed sends end to end with the real relay (h/sealedstore merged): real clients, a real NK
connection, the relay's own certificate issuer and access keys.

The credentials here are the test's (:class:`RelayCredentials`: a certificate from the relay's
issuer, bob's access key put in the relay's store), standing in for
``tidings.client.sealed_keys`` until it is merged; bob's device does not open sealed messages
yet (it acks them unread), so "bob shows it" waits for that merge too.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness import TIMEOUT, ClientLab, ObservedRelay, Peer, RelayLab, is_received, is_status
from tidings.client.connect import open_channel
from tidings.client.events import CatchingUp, MessageReceived
from tidings.delivery import Status, direct_conversation
from tidings.e2e.certificates import SenderCertificate
from tidings.net.channel import Event, FrameReceived
from tidings.net.ws import ChannelConnection
from tidings.refs import DeviceRef
from tidings.wire import SealedSend, SealedSent, TagStatus

BOB1 = DeviceRef("bob", 1)
BOB_KEY = bytes(range(16))


class RelayCredentials:
    """SealedCredentials from the relay itself: its issuer's certificate for the device."""

    def __init__(self, relay: ObservedRelay, me: DeviceRef, identity_key: bytes) -> None:
        raw, _ = relay.issuer.issue(me, identity_key, time.time())
        self.cert = SenderCertificate.parse(raw)
        self.keys: dict[str, bytes] = {}
        self.forgotten: list[str] = []

    def access_key_for(self, account: str) -> bytes | None:
        return self.keys.get(account)

    def certificate(self, now: float) -> SenderCertificate | None:
        return self.cert

    def forget_access_key(self, account: str) -> None:
        self.forgotten.append(account)
        self.keys.pop(account, None)


def inbox_rows(tmp: Path, account: str) -> list[tuple[Any, ...]]:
    """The relay's queued items for ``account``: (kind, sender account, sender device)."""
    db = sqlite3.connect(tmp / "relay.db")
    try:
        return db.execute(
            "SELECT kind, sender_account, sender_device FROM inbox WHERE account = ?", (account,)
        ).fetchall()
    finally:
        db.close()


async def sealed_alice(
    clients: ClientLab, relay: ObservedRelay, home: Path, key: bytes = BOB_KEY
) -> tuple[Peer, RelayCredentials]:
    peer = await clients.start(home, connect=False)
    c = peer.client
    creds = RelayCredentials(relay, c.me, c.crypto.keys.identity.public.raw)
    creds.keys["bob"] = key
    c.sealed_credentials = creds
    await c.wait_connected()
    return peer, creds


async def ask(peer: Peer) -> list[tuple[bytes, bool]]:
    """One TAG_QUERY round on the real relay: (message id, whether its tag is still kept)."""
    sealed = peer.client._outbox.sealed
    asked = [r.message_id for r in peer.client.store.tags_to_ask(10)]
    answered = asyncio.Event()
    original = sealed.on_tag_status

    def spy(frame: TagStatus) -> None:
        original(frame)
        answered.set()

    sealed.on_tag_status = spy  # type: ignore[method-assign]
    try:
        peer.client._ask_tags()
        async with asyncio.timeout(TIMEOUT):
            await answered.wait()
    finally:
        sealed.on_tag_status = original  # type: ignore[method-assign]
    kept = {r.message_id for r in peer.client.store.tags_to_ask(10)}
    return [(m, m in kept) for m in asked]


async def test_the_relay_stores_a_sealed_message_with_no_sender(
    tmp_path: Path, relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    bob_home = await clients.register("bob")  # offline: its copy waits at the relay
    await relay.store.put_access_key(BOB1, BOB_KEY)
    alice, _ = await sealed_alice(clients, relay, await clients.register("alice"))

    mid = await alice.client.send("bob", "no sender at the relay")
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert "sealed_stored" in [p.point for p in alice.client.trace(mid)]
    assert inbox_rows(tmp_path, "bob") == [(3, "", 0)]  # a sealed item: no sender
    # ✗ or not, asked by tag: queued while bob is away (kept), delivered once he fetched it
    assert await ask(alice) == [(mid, True)]
    bob = await clients.start(bob_home)  # acks the sealed item (it cannot open it yet)
    await bob.until(lambda e: isinstance(e, CatchingUp) and e.finished)
    for _ in range(50):  # bounded; each round waits for the relay's answer
        if await ask(alice) == [(mid, False)]:
            break
    assert alice.client.store.tags_to_ask(10) == []  # DELIVERED: forgotten


async def test_a_wrong_access_key_falls_back_and_is_delivered_once(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    bob = await clients.new("bob")
    await relay.store.put_access_key(BOB1, BOB_KEY)
    alice, creds = await sealed_alice(
        clients, relay, await clients.register("alice"), key=b"rotated!" * 2
    )
    mid = await alice.client.send("bob", "old key")
    got = await bob.until(is_received(mid))
    assert isinstance(got, MessageReceived) and got.message.sender == DeviceRef("alice", 1)
    await alice.until(is_status(mid, Status.DELIVERED, BOB1))
    assert set(creds.forgotten) == {"bob"}
    unsealed = next(p for p in alice.client.trace(mid) if p.point == "unsealed")
    assert unsealed.detail is not None and unsealed.detail.startswith("ACCESS_DENIED")
    shown = bob.client.store.messages(direct_conversation("alice", "bob"))
    assert [m.message_id for m in shown].count(mid) == 1


class Deaf:
    """A handler that loses the SEALED_SENT answers (as a connection cut right before them)."""

    def __init__(self, inner: Any, lost: asyncio.Event) -> None:
        self.inner = inner
        self.lost = lost

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, FrameReceived) and isinstance(event.frame, SealedSent):
            self.lost.set()  # sent after the relay's commit
            return
        self.inner.on_channel_event(conn, event)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self.inner.on_disconnected(conn)


async def test_a_retry_after_a_restart_reuses_the_tag_one_item_at_the_relay(
    tmp_path: Path, relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    await clients.register("bob")
    await relay.store.put_access_key(BOB1, BOB_KEY)
    home = await clients.register("alice")
    alice, _ = await sealed_alice(clients, relay, home)
    lost = asyncio.Event()

    async def opener(url: str, handler: Any, key: bytes) -> ChannelConnection:
        deaf = Deaf(handler, lost)
        return await open_channel(url, deaf, None, key, alice.client.config.keepalive)

    alice.client.unidentified.opener = opener
    mid = await alice.client.send("bob", "stored, answer lost")
    async with asyncio.timeout(TIMEOUT):
        await lost.wait()
    stored = inbox_rows(tmp_path, "bob")
    assert stored and all(row == (3, "", 0) for row in stored)
    assert alice.client.status(mid) is Status.PENDING  # no answer: no ✓
    await alice.client.close()

    alice, _ = await sealed_alice(clients, relay, home)  # restarted: the same tag goes again
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert inbox_rows(tmp_path, "bob") == stored  # each stored once
    point = next(p for p in alice.client.trace(mid) if p.point == "sealed_stored")
    assert point.detail == "duplicate"


async def test_alice_and_bob_with_their_own_credentials_seal_messages_and_receipts(
    relays: RelayLab, clients: ClientLab
) -> None:
    """No fakes: each device's own SealedKeys (profile keys shared by the first messages, the
    relay's certificates and access keys). A message goes sealed once alice holds bob's
    profile key; bob shows it from alice, and his receipt, sealed too, makes it ✓✓."""
    await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    bob_sealed: list[str] = []
    send = bob.client.unidentified.send

    def spy(frames: Sequence[Any]) -> None:
        bob_sealed.extend(f.recipient for f in frames if isinstance(f, SealedSend))
        send(frames)

    bob.client.unidentified.send = spy  # type: ignore[method-assign]
    sealed_mid = None
    for i in range(4):  # the profile keys go with the first messages both ways
        mid = await alice.client.send("bob", f"hello {i}")
        got = await bob.until(is_received(mid))
        assert isinstance(got, MessageReceived) and got.message.sender == DeviceRef("alice", 1)
        await alice.until(is_status(mid, Status.DELIVERED, BOB1))
        reply = await bob.client.send("alice", f"re {i}")
        await alice.until(is_received(reply))
        if "sealed_stored" in [p.point for p in alice.client.trace(mid)]:
            sealed_mid = mid
            break
    assert sealed_mid is not None, "no message went sealed"
    assert "alice" in bob_sealed  # bob's receipts and replies to alice went sealed
    shown = bob.client.store.messages(direct_conversation("alice", "bob"))
    assert [m.message_id for m in shown].count(sealed_mid) == 1
