"""Sealed sends end to end through a real relay (SQLite store, sockets): a recipient with two
devices on raw authenticated sessions, a sender on a raw unidentified (Noise NK) session with
nothing but the recipient's access key (docs/protocol.md §14.2)."""

from __future__ import annotations

import logging
import os

import pytest

from tests.harness import RelayLab
from tests.server.noise_ws import NoiseWS
from tidings.noise import generate_keypair
from tidings.store import DeviceRef, TagState
from tidings.wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    ErrorCode,
    Frame,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Ping,
    Pong,
    Register,
    Registered,
    RequestFailed,
    SealedDevice,
    SealedSend,
    SealedSent,
    SetAccessKey,
    TagQuery,
    TagStatus,
    Welcome,
)

ACCESS_KEY = bytes(range(16))
TAG = os.urandom(16)
MAX_FRAMES = 20  #: frames read while looking for one kind (a bound, never reached)


async def next_of(peer: NoiseWS, kind: type[Frame]) -> Frame:
    """The next frame of ``kind`` ``peer`` receives, skipping others (DEVICES, PREKEYS_LOW)."""
    for _ in range(MAX_FRAMES):
        (frame,) = await peer.next()
        if isinstance(frame, kind):
            return frame
    raise AssertionError(f"no {kind.__name__} in {MAX_FRAMES} frames")


async def register(url: str, account: str, private: bytes, code: bytes | None = None) -> NoiseWS:
    peer = await NoiseWS.open(url, private)
    await peer.send(Register(PROTOCOL_VERSION, account, "phone", code))
    assert isinstance(await next_of(peer, Registered), Registered)
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    assert isinstance(await next_of(peer, Welcome), Welcome)
    return peer


async def test_a_sealed_send_reaches_every_device_and_its_tag_says_delivered(
    relays: RelayLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings")
    relay = await relays.start(log_level="debug")
    bob1_key, _ = generate_keypair(os.urandom)
    bob2_key, _ = generate_keypair(os.urandom)
    bob1 = await register(relay.url, "bob", bob1_key)
    await bob1.send(LinkCodeRequest(1))
    code = await next_of(bob1, LinkCode)
    assert isinstance(code, LinkCode)
    bob2 = await register(relay.url, "bob", bob2_key, code.code)
    await bob2.ws.close()  # offline: it catches up later
    await bob1.send(SetAccessKey(2, ACCESS_KEY))
    # No identity key uploaded: no certificate, but the key is stored all the same (§6.33).
    failed = await next_of(bob1, RequestFailed)
    assert isinstance(failed, RequestFailed) and failed.code == ErrorCode.NO_PREKEYS
    assert await relay.store.access_key("bob") == ACCESS_KEY

    first_line = len(caplog.records)  # the relay's own lines before name its own address
    sender = await NoiseWS.open_nk(relay.url, relay.static_public)
    devices = (SealedDevice(1, b"sealed one"), SealedDevice(2, b"sealed two"))
    await sender.send(SealedSend(TAG, "bob", ACCESS_KEY, devices))
    (sent,) = await sender.next()
    assert isinstance(sent, SealedSent)
    assert (sent.tag, sent.recipient, sent.code, sent.duplicate) == (TAG, "bob", 0, False)
    assert sent.stored_at > 0

    live = await next_of(bob1, Deliver)  # pushed to the live session
    assert isinstance(live, Deliver)
    assert (live.kind, live.sender_account, live.sender_device) == (3, "", 0)
    assert (live.message_id, live.payload) == (TAG, b"sealed one")
    await sender.send(TagQuery(1, (TAG,)))
    assert await sender.next() == [TagStatus(1, ((TAG, int(TagState.QUEUED)),))]
    await bob1.send(Ack(live.seq), Ping(6))
    assert await next_of(bob1, Pong) == Pong(6)

    bob2 = await NoiseWS.open(relay.url, bob2_key)  # reconnects: its page read brings it
    await bob2.send(Hello(PROTOCOL_VERSION, 0))
    caught = await next_of(bob2, Deliver)
    assert isinstance(caught, Deliver)
    assert (caught.kind, caught.message_id, caught.payload) == (3, TAG, b"sealed two")
    # A PING after the ACK: its PONG comes after the ack's deletion was queued to the store,
    # so the query below is read after it (the store runs its operations in order).
    await bob2.send(Ack(caught.seq), Ping(7))
    assert await next_of(bob2, Pong) == Pong(7)
    await sender.send(TagQuery(2, (TAG,)))
    assert await sender.next() == [TagStatus(2, ((TAG, int(TagState.DELIVERED)),))]

    # The same tag again: a duplicate, nothing stored twice.
    await sender.send(SealedSend(TAG, "bob", ACCESS_KEY, devices))
    (again,) = await sender.next()
    assert isinstance(again, SealedSent)
    assert (again.code, again.duplicate, again.stored_at) == (0, True, sent.stored_at)
    assert await relay.store.queue_depth(DeviceRef("bob", 1)) == 0

    # A wrong key: ACCESS_DENIED, nothing stored; the session stays open.
    other = os.urandom(16)
    await sender.send(SealedSend(other, "bob", bytes(16), devices))
    (denied,) = await sender.next()
    assert isinstance(denied, SealedSent)
    assert (denied.code, denied.stored_at) == (ErrorCode.ACCESS_DENIED, 0)
    assert await relay.store.tag_states([other]) == [TagState.UNKNOWN]
    for ref in (DeviceRef("bob", 1), DeviceRef("bob", 2)):
        assert await relay.store.queue_depth(ref) == 0

    # No log line of it all names the sender: it has no account, and its address is not logged.
    assert caplog.records[first_line:], "the probe saw no line at all"
    for record in caplog.records[first_line:]:
        line = record.getMessage()
        assert "127.0.0.1" not in line and ACCESS_KEY.hex() not in line, line
