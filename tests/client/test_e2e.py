"""End-to-end encryption in the client (issue 3): sessions per device, retry requests, identity
pins, the replay guard, prekey rotation — and a relay that never holds a plaintext (G6).

The first part drives :class:`DeviceCrypto` directly on two real stores (no relay: bundles are
built from the peer's stored prekeys, as the relay would hand them out); the second runs real
clients through a real relay.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.client.crypto import DeviceCrypto
from tidings.client.events import ClientEvent, DecryptionFailed, IdentityChanged
from tidings.client.prekeys import REPLACED_PREKEY_KEEP, DeviceKeys
from tidings.client.store import ClientStore, CryptoWrites, OutboxItem
from tidings.client.store._crypto import KEM, ONE_TIME, SIGNED
from tidings.delivery import ContentKind, Message, Status, parse_content
from tidings.e2e import SIGNED_PREKEY_ROTATION, BundleError, EnvelopeType, seal_envelope
from tidings.errors import DecryptionError
from tidings.server.logs import JsonFormatter
from tidings.store import Submission
from tidings.store.base import DeviceRef
from tidings.wire import KemKey, OneTimeKey, PrekeyBundle, SignedKey

NOW = 1_800_000_000.0
ALICE, BOB = DeviceRef("alice", 1), DeviceRef("bob", 1)


class Side:
    """One device's store and crypto, with the events it reported."""

    def __init__(self, tmp: Path, me: DeviceRef) -> None:
        self.store = ClientStore(tmp / f"{me}.db")
        DeviceKeys.create(self.store, NOW)
        self.events: list[ClientEvent] = []
        self.now = NOW
        self.crypto = DeviceCrypto(self.store, me, self.events.append, lambda: self.now)

    def bundle(self, me: DeviceRef, *, one_time: bool = True) -> PrekeyBundle:
        """What the relay would hand out for this device."""
        s = self.store.current_prekey(SIGNED)
        k = self.store.current_prekey(KEM)
        assert s is not None and s.signature is not None and k is not None and k.signature
        otk = next((p for p in self.store.prekeys() if p.kind == ONE_TIME), None)
        assert otk is not None
        return PrekeyBundle(
            1,
            me.account,
            me.device_id,
            self.crypto.keys.identity.public.raw,
            SignedKey(s.key_id, s.public, s.signature),
            OneTimeKey(otk.key_id, otk.public) if one_time else None,
            KemKey(k.key_id, k.public, k.signature, True),
        )

    def seal(self, to: DeviceRef, body: bytes) -> bytes:
        content = Message("alice:bob", 1, NOW, body).serialize()
        item = OutboxItem(1, os.urandom(16), to.account, ContentKind.MESSAGE, content, NOW, 0, 0)
        writes = CryptoWrites(self.now)
        payloads, new = self.crypto.seal(item, [to], writes)
        self.store.save_sealed(new, writes)
        return payloads[to]

    def open(self, sender: DeviceRef, payload: bytes) -> bytes:
        writes = CryptoWrites(self.now)
        opened = self.crypto.open(sender, payload, writes)
        self.store.save_crypto(writes)
        return opened.content


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    alice, bob = Side(tmp_path, ALICE), Side(tmp_path, BOB)
    yield alice, bob
    alice.store.close()
    bob.store.close()


def install(side: Side, bundle: PrekeyBundle) -> None:
    side.store.save_crypto(side.crypto.install_bundle(bundle))


def test_a_session_from_a_bundle_carries_messages_both_ways(pair: tuple[Side, Side]) -> None:
    alice, bob = pair
    install(alice, bob.bundle(BOB))
    first = alice.seal(BOB, b"hello")
    assert first[0] == EnvelopeType.PREKEY  # starts the session: PQXDH parameters inside
    used = parse_content(bob.open(ALICE, first))
    assert isinstance(used, Message) and used.body == b"hello"
    # the one-time prekey it used is gone, with the message's transaction
    assert len([p for p in bob.store.prekeys() if p.kind == ONE_TIME]) == 99
    reply = bob.seal(ALICE, b"hi")
    assert reply[0] == EnvelopeType.WHISPER
    assert parse_content(alice.open(BOB, reply)) == Message("alice:bob", 1, NOW, b"hi")
    # both pinned each other's identity key on first use: no change reported
    assert alice.events == [] and bob.events == []
    a, b = alice.crypto.safety_number("bob"), bob.crypto.safety_number("alice")
    assert a is not None and b is not None and a.number == b.number and len(a.number) == 60


def test_a_bundle_the_wire_accepts_but_crypto_cannot_use_is_a_bundle_error(
    pair: tuple[Side, Side],
) -> None:
    """A 33-byte identity key or a KEM key that fails FIPS 203's check passes the frame codec;
    it must raise the one BundleError KeySync handles (a FrameError killed the fetch task and
    left the outbox lane held for good)."""
    alice, bob = pair
    good = bob.bundle(BOB)
    bad_identity = dataclasses.replace(good, identity_key=b"\x05" + good.identity_key)
    kem = good.kem_prekey
    bad_kem = dataclasses.replace(
        good, kem_prekey=dataclasses.replace(kem, public=b"\xff" * len(kem.public))
    )
    for bundle in (bad_identity, bad_kem):
        with pytest.raises(BundleError):
            alice.crypto.install_bundle(bundle)
    assert not alice.crypto.has_session(BOB)


def test_a_tampered_or_replayed_payload_changes_nothing(pair: tuple[Side, Side]) -> None:
    alice, bob = pair
    install(alice, bob.bundle(BOB))
    payload = alice.seal(BOB, b"once")
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    before = bob.store.session_record(ALICE)
    with pytest.raises(DecryptionError):
        bob.open(ALICE, tampered)
    assert bob.store.session_record(ALICE) == before
    bob.open(ALICE, payload)
    with pytest.raises(DecryptionError):  # the same message again: its keys are used up
        bob.open(ALICE, payload)
    with pytest.raises(DecryptionError):  # garbage of every kind
        bob.open(ALICE, b"\x07garbage")


def test_a_replayed_session_start_without_one_time_prekey_is_refused(
    pair: tuple[Side, Side],
) -> None:
    """The last-resort guard: a session started on reusable keys only (no one-time prekey
    left) cannot be started again by replaying its first message once the record is gone."""
    alice, bob = pair
    install(alice, bob.bundle(BOB, one_time=False))
    payload = alice.seal(BOB, b"first")
    bob.open(ALICE, payload)
    bob.store._db.execute("DELETE FROM e2e_sessions")  # the record is gone (archived out)
    bob.crypto.reload()
    with pytest.raises(DecryptionError):
        bob.open(ALICE, payload)


def test_a_rotated_signed_prekey_still_opens_sessions_until_it_is_pruned(
    pair: tuple[Side, Side],
) -> None:
    alice, bob = pair
    old = bob.bundle(BOB)
    assert bob.crypto.keys.rotate_if_due(NOW + SIGNED_PREKEY_ROTATION)
    new_spk = bob.store.current_prekey(SIGNED)
    assert new_spk is not None and new_spk.key_id != old.signed_prekey.key_id
    install(alice, old)  # alice fetched the bundle before the rotation
    assert parse_content(bob.open(ALICE, alice.seal(BOB, b"late"))) is not None
    # after the keep period the old signed prekey is deleted: a message naming it fails
    bob.crypto.keys.rotate_if_due(NOW + SIGNED_PREKEY_ROTATION + REPLACED_PREKEY_KEEP + 1)
    assert bob.store.prekey(SIGNED, old.signed_prekey.key_id) is None
    # a new session start on the old bundle (no one-time prekey): its signed prekey is gone
    install(alice, dataclasses.replace(old, one_time=None))
    with pytest.raises(DecryptionError):
        bob.open(ALICE, alice.seal(BOB, b"too late"))


def test_an_identity_key_change_is_reported_and_unverifies(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    alice, bob = pair
    install(alice, bob.bundle(BOB))
    number = alice.crypto.safety_number("bob")
    assert number is not None and not number.verified
    alice.store.set_verified("bob", number.number, NOW)
    verified = alice.crypto.safety_number("bob")
    assert verified is not None and verified.verified
    # bob's device 1 comes back with another identity key (a reinstall, or a lying relay)
    (tmp_path / "reinstalled").mkdir()
    other = Side(tmp_path / "reinstalled", BOB)
    install(alice, other.bundle(BOB))
    assert alice.events == [IdentityChanged(BOB, new_device=False)]
    after = alice.crypto.safety_number("bob")
    assert after is not None and after.number != number.number and not after.verified
    other.store.close()


def test_the_prekey_upload_covers_every_key_once(tmp_path: Path) -> None:
    store = ClientStore(tmp_path / "k.db")
    DeviceKeys.create(store, NOW)
    keys = DeviceKeys(store)
    frame, sent = keys.upload(7)
    assert len(frame.one_time) == 100 and len(frame.kem_prekeys) == 100
    assert sum(k.last_resort for k in frame.kem_prekeys) == 1
    store.mark_uploaded(sent)
    assert not keys.needs_upload()
    assert not keys.refill(50, 50, NOW)  # enough left at the relay
    assert keys.refill(3, 50, NOW)  # one-time keys low: a new batch of that kind only
    frame, _ = keys.upload(8)
    assert len(frame.one_time) == 100 and frame.kem_prekeys == ()
    store.close()


# ------------------------------------------------------------------ through a real relay


async def test_the_relay_never_holds_a_plaintext(
    relays: RelayLab, clients: ClientLab, tmp_path: Path
) -> None:
    """G6: messages, their sync copies and their receipts cross the relay encrypted; a scan
    of everything the relay wrote — its database files and its debug log — finds none of the
    marker strings sent."""
    await relays.start(log_level="debug")
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: record.name.startswith("tidings.server"))
    logger = logging.getLogger("tidings")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        alice = await clients.new("alice")
        alice2 = await clients.link(alice)
        bob = await clients.new("bob")
        markers = [f"marker-{os.urandom(6).hex()}" for _ in range(5)]
        ids = [await alice.client.send("bob", m) for m in markers]
        for mid in ids:
            await bob.until(is_received(mid))
            await alice2.until(is_received(mid))  # sent-message sync, encrypted to alice's device 2
        assert await bob.client.mark_read(ids) == 5
        for mid in ids:
            await alice.until(is_status(mid, Status.READ))  # receipts are encrypted too
        reply = await bob.client.send("alice", "reply-" + markers[0])
        await alice.until(is_received(reply))
        await bob.client.drain(10)
        await alice.client.drain(10)
    finally:  # a failure here must not leave the handler for the next tests
        logger.removeHandler(handler)
        logger.setLevel(level)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("relay*") if p.is_file())
    logged = log_text.getvalue()
    assert len(written) > 10_000 and "registered alice.1" in logged  # real data
    for marker in markers:
        assert marker.encode() not in written
        assert marker not in logged
    assert b"alice:bob" not in written  # the conversation id travels inside, too


async def test_a_lost_session_is_rebuilt_by_a_retry_request(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    first = await alice.client.send("bob", "first")
    await bob.until(is_received(first))
    await alice.until(is_status(first, Status.DELIVERED))
    # bob loses his session with alice (e.g. a restored backup): alice's next message, a
    # plain ratchet message, cannot decrypt
    bob.client.store._db.execute("DELETE FROM e2e_sessions WHERE account = 'alice'")
    bob.client.crypto.reload()
    second = await alice.client.send("bob", "second")
    failed = await bob.until(lambda e: isinstance(e, DecryptionFailed))
    assert isinstance(failed, DecryptionFailed) and failed.retry_requested
    assert failed.message_id == second
    # alice rebuilt the session and sent it again under the same id: bob has it once
    got = await bob.until(is_received(second))
    assert got.message.body == b"second"  # type: ignore[union-attr]
    await alice.until(is_status(second, Status.DELIVERED))
    third = await alice.client.send("bob", "third")
    await bob.until(is_received(third))
    assert len(bob.client.store.messages("alice:bob")) == 3


async def test_an_unencrypted_message_is_never_shown(relays: RelayLab, clients: ClientLab) -> None:
    """Only a retry request may travel unencrypted: a relay cannot inject readable messages."""
    relay = await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    forged = seal_envelope(
        EnvelopeType.PLAINTEXT, Message("alice:bob", 1, NOW, b"forged").serialize()
    )
    sub = Submission(
        sender=alice.me,
        message_id=os.urandom(16),
        recipient="bob",
        payloads=((bob.me, forged),),
        now=relays.clock(),
        expires_at=relays.clock() + 3600,
        max_queue=1000,
    )
    result = await relay.store.submit(sub)
    relay.offer(result.items)  # type: ignore[union-attr]
    real = await alice.client.send("bob", "real")
    got = await bob.until(is_received())
    assert got.message.message_id == real  # type: ignore[union-attr]
    assert bob.client.store.cursor() == 2  # the forged item was delivered, and dropped
    assert all(m.body != b"forged" for m in bob.client.store.messages("alice:bob"))


async def test_registration_uploads_prekeys_and_a_low_notice_refills_them(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    bob = await clients.new("bob")
    counts = await relay.store.prekey_counts(bob.me)
    assert counts is not None and (counts.one_time, counts.kem) == (100, 99)
    assert not bob.client.crypto.keys.needs_upload()
    # the relay says few are left (PREKEYS_LOW): a new batch of each kind goes up
    await bob.client._keysync.sync((3, 4))
    counts = await relay.store.prekey_counts(bob.me)
    assert counts is not None and (counts.one_time, counts.kem) == (200, 198)
    assert not bob.client.crypto.keys.needs_upload()


async def test_new_devices_are_reported_only_once_the_number_was_verified(
    relays: RelayLab, clients: ClientLab
) -> None:
    """First contact with a two-device account is no identity change; a device added to an
    account whose safety number alice verified is (the number she compared no longer holds)."""
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    first = await alice.client.send("bob", "to both of you")
    await bob1.until(is_received(first))
    await bob2.until(is_received(first))
    await alice.until(is_status(first, Status.SENT))
    queued = []  # everything alice reported so far (an identity change would precede the send)
    while not alice.events._queue.empty():
        queued.append(alice.events._queue.get_nowait())
    assert not [e for e in alice.seen + queued if isinstance(e, IdentityChanged)]
    number = alice.client.safety_number("bob")
    assert number is not None and number.remote_devices == (1, 2)
    alice.client.store.set_verified("bob", number.number, NOW)

    bob3 = await clients.link(bob1)
    second = await alice.client.send("bob", "and you")
    await bob3.until(is_received(second))
    changed = await alice.until(lambda e: isinstance(e, IdentityChanged))
    assert changed == IdentityChanged(bob3.me, new_device=True)
    after = alice.client.safety_number("bob")
    assert after is not None and after.remote_devices == (1, 2, 3) and not after.verified
