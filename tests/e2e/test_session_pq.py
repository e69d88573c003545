"""e2e.session, v4: PQXDH sessions between two of our peers over an in-memory wire.

Real ML-KEM-1024 encapsulation here (its randomness is OpenSSL's, but no outcome depends on
it); the byte-exact frozen v4 messages are in ``test_pq_vectors.py``.
"""

from __future__ import annotations

import random

import pytest

from tidings.e2e import (
    BundleError,
    IdentityKeyPair,
    KeyPair,
    MessageType,
    PreKeyBundle,
    Session,
    bundle_for_session,
    generate_kem_prekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from tidings.e2e.message import PreKeyWhisperMessage
from tidings.errors import DecryptionError

from ._support import DictPreKeys, seeded_rng

Wire = tuple[MessageType, bytes]


class PQPeers:
    """Alice starts a v4 session to Bob from his relay bundle (one-time KEM prekey 7)."""

    def __init__(self, seed: int = 1, last_resort: bool = False) -> None:
        self.rng = seeded_rng(seed)
        alice_id, self.bob_id = (IdentityKeyPair.generate(self.rng) for _ in range(2))
        self.alice = Session(alice_id.dh_key_pair, 1111)
        self.bob = Session(self.bob_id.dh_key_pair, 2222)
        spk = generate_signed_prekey(5, self.bob_id.sign, self.rng, 0)
        [opk] = generate_one_time_prekeys(9, 1, self.rng)
        kem_prekey = generate_kem_prekey(7, self.bob_id.sign, self.rng, last_resort)
        self.prekeys = DictPreKeys()
        self.prekeys.signed[5] = KeyPair.from_private(spk.private)
        self.prekeys.one_time[9] = KeyPair.from_private(opk.private)
        self.prekeys.kem[7] = kem_prekey.private
        self.relay = PreKeyBundle(self.bob_id.public.raw, spk.prekey, opk.prekey, kem_prekey.prekey)
        self.alice.initiate_pq(bundle_for_session(self.relay, registration_id=2222), self.rng)

    def to_bob(self, wire: Wire) -> bytes:
        result = self.bob.decrypt(wire[0], wire[1], self.rng, self.prekeys)
        if result.used_prekey_id is not None:
            del self.prekeys.one_time[result.used_prekey_id]
        if result.used_kem_prekey_id is not None and not self.relay.kem_prekey.last_resort:
            del self.prekeys.kem[result.used_kem_prekey_id]
        return result.plaintext

    def to_alice(self, wire: Wire) -> bytes:
        return self.alice.decrypt(wire[0], wire[1], self.rng).plaintext


def test_v4_prekey_messages_until_a_reply_then_v4_whisper() -> None:
    peers = PQPeers()
    first, second = peers.alice.encrypt(b"one"), peers.alice.encrypt(b"two")
    assert first[0] == second[0] == MessageType.PREKEY
    assert first[1][0] == 0x44
    parsed = PreKeyWhisperMessage.parse(first[1])
    assert parsed.kem_prekey_id == 7 and parsed.prekey_id == 9 and parsed.signed_prekey_id == 5
    assert parsed.kem_ciphertext is not None
    assert PreKeyWhisperMessage.parse(second[1]).kem_ciphertext == parsed.kem_ciphertext
    result = peers.bob.decrypt(*second, peers.rng, peers.prekeys)
    assert (result.plaintext, result.used_prekey_id, result.used_kem_prekey_id) == (b"two", 9, 7)
    repeat = peers.bob.decrypt(*first, peers.rng, peers.prekeys)  # same session: no new use
    assert (repeat.plaintext, repeat.used_prekey_id, repeat.used_kem_prekey_id) == (
        b"one",
        None,
        None,
    )
    assert peers.bob.open is not None and peers.bob.open.version == 4
    reply = peers.bob.encrypt(b"hi")
    assert reply[0] == MessageType.WHISPER and reply[1][0] == 0x44
    assert peers.to_alice(reply) == b"hi"
    assert peers.alice.encrypt(b"three")[1][0] == 0x44


@pytest.mark.parametrize("seed", range(2))
def test_out_of_order_both_directions(seed: int) -> None:
    peers = PQPeers(seed)
    shuffle = random.Random(seed)
    opening = [peers.alice.encrypt(b"open %d" % i) for i in range(4)]
    shuffle.shuffle(opening)
    for kind, data in opening:
        assert peers.to_bob((kind, data)).startswith(b"open")
    assert peers.prekeys.kem == {} and peers.prekeys.one_time == {}
    in_flight: list[tuple[str, Wire, bytes]] = []
    for turn in range(30):
        for _ in range(shuffle.randint(0, 4)):
            sender = shuffle.choice(["alice", "bob"])
            text = f"{sender} {turn} {shuffle.random()}".encode()
            in_flight.append(
                (sender, (peers.alice if sender == "alice" else peers.bob).encrypt(text), text)
            )
        shuffle.shuffle(in_flight)
        for _ in range(shuffle.randint(0, len(in_flight))):
            sender, wire, text = in_flight.pop()
            assert wire[1][0] == 0x44
            assert (peers.to_bob if sender == "alice" else peers.to_alice)(wire) == text
    for sender, wire, text in in_flight:
        assert (peers.to_bob if sender == "alice" else peers.to_alice)(wire) == text


def _kem_ciphertext_offset(data: bytes) -> int:
    """Where the ciphertext (after the 0x0A type byte) starts in a serialized message."""
    parsed = PreKeyWhisperMessage.parse(data)
    assert parsed.kem_ciphertext is not None
    return data.index(b"\x0a" + parsed.kem_ciphertext) + 1


@pytest.mark.parametrize("where", [0, 700, 1567])
def test_tampered_kem_ciphertext_fails_with_no_state_change(where: int) -> None:
    peers = PQPeers()
    kind, data = peers.alice.encrypt(b"hello")
    tampered = bytearray(data)
    tampered[_kem_ciphertext_offset(data) + where] ^= 0x01
    prekeys_before = (dict(peers.prekeys.one_time), dict(peers.prekeys.kem))
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(kind, bytes(tampered), peers.rng, peers.prekeys)
    assert peers.bob.open is None and not peers.bob.archived
    assert (peers.prekeys.one_time, peers.prekeys.kem) == prekeys_before
    assert peers.to_bob((kind, data)) == b"hello"  # the genuine one still works


def test_tampered_kem_ciphertext_on_an_established_session_changes_nothing() -> None:
    peers = PQPeers()
    kind, data = peers.alice.encrypt(b"one")
    peers.to_bob((kind, data))
    tampered = bytearray(data)
    tampered[_kem_ciphertext_offset(data) + 10] ^= 0x80
    before = peers.bob.serialize()
    # The base key matches Bob's session, whose MAC keys come from the real ciphertext: the
    # message is the duplicate of one already read, and fails like one.
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(kind, bytes(tampered), peers.rng, peers.prekeys)
    assert peers.bob.serialize() == before


def test_replay_after_the_one_time_kem_prekey_is_gone() -> None:
    peers = PQPeers()
    wire = peers.alice.encrypt(b"hello")
    one_time = peers.prekeys.one_time[9]
    peers.to_bob(wire)
    assert 7 not in peers.prekeys.kem
    peers.bob = Session(peers.bob.identity, 2222)  # the session was lost; the replay comes
    peers.prekeys.one_time[9] = one_time  # so that only the KEM prekey is missing
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(*wire, peers.rng, peers.prekeys)
    assert peers.bob.open is None


def test_last_resort_kem_prekey_is_reported_and_reusable() -> None:
    peers = PQPeers(last_resort=True)
    assert peers.to_bob(peers.alice.encrypt(b"first")) == b"first"
    assert 7 in peers.prekeys.kem
    carol = Session(IdentityKeyPair.generate(peers.rng).dh_key_pair, 3333)
    relay = peers.relay
    carol.initiate_pq(
        bundle_for_session(
            PreKeyBundle(relay.identity_key, relay.signed_prekey, None, relay.kem_prekey)
        ),
        peers.rng,
    )
    result = peers.bob.decrypt(*carol.encrypt(b"carol"), peers.rng, peers.prekeys)
    assert (result.plaintext, result.used_prekey_id, result.used_kem_prekey_id) == (
        b"carol",
        None,
        7,
    )


def test_v4_needs_a_kem_prekey_store() -> None:
    peers = PQPeers()
    wire = peers.alice.encrypt(b"hello")

    class NoKem:
        def signed_prekey(self, prekey_id: int) -> object:
            return peers.prekeys.signed_prekey(prekey_id)

        def one_time_prekey(self, prekey_id: int) -> object:
            return peers.prekeys.one_time_prekey(prekey_id)

    with pytest.raises(DecryptionError):
        peers.bob.decrypt(*wire, peers.rng, NoKem())  # type: ignore[arg-type]
    del peers.prekeys.kem[7]
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(*wire, peers.rng, peers.prekeys)
    assert peers.bob.open is None


def test_version_downgrade_is_rejected() -> None:
    peers = PQPeers()
    peers.to_bob(peers.alice.encrypt(b"hello"))
    kind, data = peers.bob.encrypt(b"reply")
    before = peers.alice.serialize()
    with pytest.raises(DecryptionError):  # the MAC covers the version byte
        peers.alice.decrypt(kind, b"\x33" + data[1:], peers.rng)
    assert peers.alice.serialize() == before
    assert peers.to_alice((kind, data)) == b"reply"


def test_bad_kem_prekey_signature_is_refused_before_any_state() -> None:
    peers = PQPeers()
    relay = peers.relay
    kem = relay.kem_prekey
    forged = type(kem)(kem.key_id, kem.public, peers.bob_id.sign(b"something else"), False)
    with pytest.raises(BundleError):
        bundle_for_session(PreKeyBundle(relay.identity_key, relay.signed_prekey, None, forged))


def test_v4_sessions_round_trip_through_bytes() -> None:
    peers = PQPeers()
    pending = peers.alice.encrypt(b"pending")
    stored = Session.parse(peers.alice.serialize(), peers.alice.identity)
    assert stored.serialize() == peers.alice.serialize()
    assert stored.encrypt(b"again")[1][0] == 0x44
    assert peers.to_bob(pending) == b"pending"
    held = peers.bob.encrypt(b"held")
    bob = Session.parse(peers.bob.serialize(), peers.bob.identity)
    assert bob.open is not None and bob.open.version == 4
    assert peers.to_alice(held) == b"held"
