"""Sealed sender's credentials and the receiving side (issue 12, docs/protocol.md §14), with real
clients and a real relay: profile keys exchanged with the first messages, access keys at the
relay, a sender certificate; a sealed message (built by hand with alice's real keys, delivered
to bob as DELIVER kind 3) shown at bob as from alice; a forged or expired certificate and a
changed identity key refused; blocking rotates the access key and skips the blocked."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.harness import ClientLab, Peer, RelayLab, is_received, is_status
from tidings.api.methods import METHODS, call
from tidings.api.rpc import ApiError
from tidings.client import SealedRefused
from tidings.client.inbox_sealed import SEALED_REFUSED
from tidings.client.store import CryptoWrites
from tidings.delivery import Message, Status, direct_conversation
from tidings.delivery.content_profile import ProfileKey
from tidings.e2e import EnvelopeType, IdentityKeyPair, seal_envelope
from tidings.e2e.access_key import access_key
from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.e2e.padding import pad
from tidings.e2e.sealed_payload import seal_payload
from tidings.refs import DeviceRef
from tidings.wire import Deliver

BOB1 = DeviceRef("bob", 1)
ALICE1 = DeviceRef("alice", 1)


async def exchange(alice: Peer, bob: Peer) -> None:
    """Each sends the other a message and sees the other's."""
    a = await alice.client.send(bob.me.account, "hi")
    await bob.until(is_received(a))
    b = await bob.client.send(alice.me.account, "hi")
    await alice.until(is_received(b))


def own_key(peer: Peer) -> ProfileKey:
    key = peer.client.store.profile_key()
    assert key is not None
    return key


def sealed_from_alice(
    alice: Peer, bob: Peer, counter: int, body: str, cert: SenderCertificate | None = None
) -> tuple[bytes, bytes]:
    """A message of alice's session with bob, sealed by hand with alice's real keys (as the
    sending side will): its message id and the sealed payload."""
    crypto = alice.client.crypto
    now = time.time()
    content = Message(direct_conversation("alice", "bob"), counter, now, body.encode())
    session = crypto.session(BOB1)
    kind, data = session.encrypt(pad(content.serialize()))
    writes = CryptoWrites(now)
    writes.sessions[BOB1] = session.serialize()
    alice.client.store.save_crypto(writes)
    envelope = seal_envelope(EnvelopeType(int(kind)), data)
    cert = cert or alice.client.sealed_keys.certificate(now)
    assert cert is not None
    message_id = os.urandom(16)
    payload = seal_payload(
        message_id,
        envelope,
        cert,
        crypto.keys.identity,
        bob.client.crypto.keys.identity.public,
        os.urandom,
    )
    return message_id, payload


def deliver_sealed(bob: Peer, seq: int, payload: bytes, enqueued_at: float | None = None) -> bytes:
    """Hand bob a DELIVER kind 3 as the relay will send it (no sender; the tag as its id)."""
    tag = os.urandom(16)
    now = time.time() if enqueued_at is None else enqueued_at
    bob.client.on_frame(Deliver(seq, 3, "", 0, tag, now, now + 30 * 86400, payload))
    return tag


async def test_profile_keys_access_keys_and_a_sealed_message_shown_as_from_alice(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    await exchange(alice, bob)

    # each holds the other's profile key, given with the first message
    assert bob.client.store.contact_profile_key("alice") == own_key(alice).key
    assert alice.client.store.contact_profile_key("bob") == own_key(bob).key
    assert alice.client.sealed_keys.access_key_for("bob") == access_key(own_key(bob).key)
    # the relay holds both access keys; alice holds a certificate with the margin left
    await alice.client.sealed_keys.wait_relay_has_key()
    await bob.client.sealed_keys.wait_relay_has_key()
    assert await relay.store.access_key("alice") == access_key(own_key(alice).key)
    assert await relay.store.access_key("bob") == access_key(own_key(bob).key)
    cert = alice.client.sealed_keys.certificate(time.time())
    assert cert is not None and (cert.account, cert.device) == ("alice", 1)
    assert cert.identity_key == alice.client.crypto.keys.identity.public

    # a sealed message: shown at bob as alice's, under the message id inside
    message_id, payload = sealed_from_alice(alice, bob, 2, "sealed hello")
    seq = bob.client.store.cursor() + 1
    deliver_sealed(bob, seq, payload)
    event = await bob.until(is_received(message_id))
    assert event.message.sender == ALICE1  # type: ignore[union-attr]
    assert event.message.body == b"sealed hello"  # type: ignore[union-attr]
    assert bob.client.store.has_message(ALICE1, message_id)
    assert bob.client.store.cursor() == seq
    # the same sealed item again (a lost ack): acked, stored once
    deliver_sealed(bob, seq, payload)
    assert bob.client.store.cursor() == seq


async def test_a_forged_or_expired_certificate_or_another_key_is_refused(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    await exchange(alice, bob)
    await alice.client.sealed_keys.wait_relay_has_key()
    real = alice.client.sealed_keys.certificate(time.time())
    assert real is not None
    me = alice.client.crypto.keys.identity

    # forged: a certificate key the relay's trust root never signed
    rogue = IdentityKeyPair(b"\x42" * 32)
    server = ServerCertificate.issue(7, rogue.public, rogue)
    forged = SenderCertificate.issue("alice", 1, me.public, real.expires_ms, server, rogue)
    # expired: the relay's own chain, issued two lifetimes ago
    issued, _ = relay.issuer.issue(ALICE1, me.public.raw, relays.clock() - 2 * 86400)
    expired = SenderCertificate.parse(issued)
    reasons = []
    for cert in (forged, expired):
        mid, payload = sealed_from_alice(alice, bob, 2, "not believed", cert)
        seq = bob.client.store.cursor() + 1
        tag = deliver_sealed(bob, seq, payload)
        event = await bob.until(lambda e: isinstance(e, SealedRefused))
        assert isinstance(event, SealedRefused) and event.tag == tag
        assert not bob.client.store.has_message(ALICE1, mid)
        assert bob.client.store.cursor() == seq  # acked and dropped
        assert [t.point for t in bob.client.store.trace(tag)] == [SEALED_REFUSED]
        reasons.append(event.reason)
    assert "not signed by the trust root" in reasons[0]
    assert "expired" in reasons[1]

    # stored by the relay while it was valid, fetched after it expired (a device offline for
    # days): believed — the certificate is checked at the item's enqueued_at, as Signal's at
    # the envelope's server timestamp
    mid, payload = sealed_from_alice(alice, bob, 2, "sealed in time", expired)
    deliver_sealed(bob, bob.client.store.cursor() + 1, payload, relays.clock() - 2 * 86400 + 60)
    event = await bob.until(is_received(mid))
    assert bob.client.store.has_message(ALICE1, mid)

    # garbage: does not open
    seq = bob.client.store.cursor() + 1
    tag = deliver_sealed(bob, seq, b"\x11" + os.urandom(80))
    event = await bob.until(lambda e: isinstance(e, SealedRefused))
    assert isinstance(event, SealedRefused) and event.tag == tag and "open" in event.reason


async def test_a_certificate_naming_another_key_than_the_pinned_one_is_refused(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    mallory = await clients.new("mallory", share_profile_key=True)
    await exchange(alice, bob)
    # A certificate for alice.1 naming mallory's key (as a relay that lies, or one that
    # certified a reset key, would issue): bob pinned another key for alice.1.
    mkey = mallory.client.crypto.keys.identity
    cert_bytes, _ = relay.issuer.issue(ALICE1, mkey.public.raw, relays.clock())
    lying = SenderCertificate.parse(cert_bytes)
    envelope = seal_envelope(EnvelopeType.WHISPER, b"\x33" + bytes(60))
    payload = seal_payload(
        os.urandom(16), envelope, lying, mkey, bob.client.crypto.keys.identity.public, os.urandom
    )
    seq = bob.client.store.cursor() + 1
    tag = deliver_sealed(bob, seq, payload)
    event = await bob.until(lambda e: isinstance(e, SealedRefused))
    assert isinstance(event, SealedRefused) and event.tag == tag
    assert "pinned" in event.reason
    assert bob.client.store.cursor() == seq


async def test_blocking_rotates_the_access_key_and_skips_the_blocked(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    carol = await clients.new("carol", share_profile_key=True)
    await exchange(alice, bob)
    await exchange(alice, carol)
    await alice.client.sealed_keys.wait_relay_has_key()
    old = own_key(alice)
    assert await relay.store.access_key("alice") == access_key(old.key)

    assert await alice.client.block("bob")
    assert not await alice.client.block("bob")  # once
    assert alice.client.blocked() == ["bob"]
    new = own_key(alice)
    assert new.key != old.key and new.generation == old.generation + 1
    await alice.client.sealed_keys.wait_relay_has_key()
    assert await relay.store.access_key("alice") == access_key(new.key)

    # carol gets the new key (before alice's next message to her); bob does not
    m = await alice.client.send("carol", "after the block")
    await carol.until(is_received(m))
    assert carol.client.store.contact_profile_key("alice") == new.key
    assert bob.client.store.contact_profile_key("alice") == old.key
    assert alice.client.store.profile_key_given("bob") == {0: old.key}

    # bob's messages are dropped at alice (carol's, sent after, show that alice got past it)
    dropped = await bob.client.send("alice", "you blocked me")
    await bob.until(is_status(dropped, Status.SENT))
    later = await carol.client.send("alice", "still here")
    await alice.until(is_received(later))
    assert alice.client.store.message(dropped) is None

    # unblocked: bob's messages show again, and he gets the current key with our next one
    assert await alice.client.unblock("bob")
    again = await bob.client.send("alice", "friends again")
    await alice.until(is_received(again))
    m = await alice.client.send("bob", "yes")
    await bob.until(is_received(m))
    assert bob.client.store.contact_profile_key("alice") == new.key


async def test_a_linked_device_is_given_the_accounts_key(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice1 = await clients.new("alice", share_profile_key=True)
    await alice1.client.sealed_keys.wait_relay_has_key()
    alice2 = await clients.link(alice1, share_profile_key=True)
    key = own_key(alice1)
    # device 1 notices device 2 (DEVICES) and gives it the key; device 2 makes none of its own
    async with asyncio.timeout(10):
        await alice2.client.sealed_keys.wait_relay_has_key()
    assert own_key(alice2) == key
    assert alice1.client.store.profile_key_given("alice") == {2: key.key}
    assert await relay.store.access_key("alice") == access_key(key.key)


async def test_block_and_unblock_through_the_api(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    answer = await call(alice.client, METHODS["block"], {"contact": "bob"})
    assert answer == {"contact": "bob", "changed": True, "blocked": ["bob"]}
    again = await call(alice.client, METHODS["block"], {"contact": "bob"})
    assert again["changed"] is False
    with pytest.raises(ApiError):
        await call(alice.client, METHODS["block"], {"contact": "alice"})
    answer = await call(alice.client, METHODS["unblock"], {"contact": "bob"})
    assert answer == {"contact": "bob", "changed": True, "blocked": []}


async def test_the_certificate_is_kept_so_a_send_at_once_after_a_restart_goes_sealed(
    relays: RelayLab, clients: ClientLab
) -> None:
    """`tidings send` starts, sends and stops: with only an in-memory certificate its first
    send could never be sealed. The certificate is kept in the store and checked again when
    read (a corrupt or expired one is not used)."""
    await relays.start()
    alice = await clients.new("alice", share_profile_key=True)
    bob = await clients.new("bob", share_profile_key=True)
    await exchange(alice, bob)
    assert alice.client.sealed_keys.certificate(time.time()) is not None
    assert alice.client.store.sender_certificate() is not None
    await alice.client.close()

    again = clients.open(alice.home, share_profile_key=True)  # not started: no session yet
    cert = again.sealed_keys.certificate(time.time())
    assert cert is not None and (cert.account, cert.device) == ("alice", 1)
    await again.start()
    mid = await again.send("bob", "at once")
    await bob.until(is_received(mid))
    assert "sealed_stored" in [p.point for p in again.trace(mid)]
    await again.close()

    # a kept certificate that does not validate is not used (and a new one is asked for)
    third = clients.open(alice.home, share_profile_key=True)
    kept = third.store.sender_certificate()
    assert kept is not None
    third.store.set_sender_certificate(kept[0][:-1] + bytes([kept[0][-1] ^ 1]), kept[1])
    await third.close()
    fourth = clients.open(alice.home, share_profile_key=True)
    assert fourth.sealed_keys.certificate(time.time()) is None
