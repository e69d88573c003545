"""e2e.session: two peers over an in-memory wire — loss, reordering, forgery, storage.

The byte-exact libsignal sessions are in ``test_signal_vectors.py``; here both peers are ours,
with Ed25519 identity keys, so these tests also show our signatures working in X3DH.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.e2e import (
    BundleError,
    IdentityKeyPair,
    KeyPair,
    MessageType,
    NoSessionError,
    RatchetParams,
    Session,
    X3DHBundle,
)
from tidings.errors import DecryptionError

from ._support import DictPreKeys, seeded_rng

Wire = tuple[MessageType, bytes]


class Peers:
    """Alice (initiator) and Bob (responder), with Bob's prekeys and one rng."""

    def __init__(self, seed: int = 1, params: RatchetParams | None = None) -> None:
        self.rng = seeded_rng(seed)
        extra = {} if params is None else {"params": params}
        alice_id, bob_id = IdentityKeyPair.generate(self.rng), IdentityKeyPair.generate(self.rng)
        self.alice = Session(alice_id.dh_key_pair, 1111, **extra)
        self.bob = Session(bob_id.dh_key_pair, 2222, **extra)
        self.prekeys = DictPreKeys()
        spk, opk = KeyPair.generate(self.rng), KeyPair.generate(self.rng)
        self.prekeys.signed[5] = spk
        self.prekeys.one_time[9] = opk
        self.bundle = X3DHBundle(
            2222, bob_id.public, 5, spk.public, bob_id.sign(spk.public.serialize()), 9, opk.public
        )
        self.alice.initiate(self.bundle, self.rng)

    def to_bob(self, wire: Wire) -> bytes:
        result = self.bob.decrypt(wire[0], wire[1], self.rng, self.prekeys)
        if result.used_prekey_id is not None:
            del self.prekeys.one_time[result.used_prekey_id]
        return result.plaintext

    def to_alice(self, wire: Wire) -> bytes:
        return self.alice.decrypt(wire[0], wire[1], self.rng).plaintext


def _snapshot(session: Session) -> bytes:
    return session.serialize()


def test_first_messages_are_prekey_messages_until_a_reply() -> None:
    peers = Peers()
    first, second = peers.alice.encrypt(b"one"), peers.alice.encrypt(b"two")
    assert first[0] == second[0] == MessageType.PREKEY
    assert peers.to_bob(second) == b"two"
    assert peers.to_bob(first) == b"one"
    assert 9 not in peers.prekeys.one_time  # consumed once, reported once
    reply = peers.bob.encrypt(b"hi")
    assert reply[0] == MessageType.WHISPER
    assert peers.to_alice(reply) == b"hi"
    assert peers.alice.encrypt(b"three")[0] == MessageType.WHISPER


def test_bad_bundle_signature() -> None:
    peers = Peers()
    forged = X3DHBundle(2222, peers.bundle.identity_key, 5, peers.bundle.signed_prekey, bytes(64))
    with pytest.raises(BundleError):
        Session(KeyPair.generate(peers.rng), 1).initiate(forged, peers.rng)


def test_api_misuse() -> None:
    peers = Peers()
    with pytest.raises(NoSessionError):
        peers.bob.encrypt(b"x")
    peers.to_bob(peers.alice.encrypt(b"x"))
    peers.alice.close()
    with pytest.raises(NoSessionError):
        peers.alice.encrypt(b"x")
    # (A responder that has not received cannot exist at this level: Bob's session is made
    # by decrypting; `SendingChainMissingError` is tested in test_ratchet.py.)


@pytest.mark.parametrize("target", ["ciphertext", "mac", "header", "version"])
def test_tampering_is_rejected_with_state_unchanged(target: str) -> None:
    peers = Peers()
    peers.to_bob(peers.alice.encrypt(b"hello"))
    kind, data = peers.bob.encrypt(b"reply")
    position = {"ciphertext": len(data) - 20, "mac": len(data) - 1, "header": 5, "version": 0}
    tampered = bytearray(data)
    tampered[position[target]] ^= 0x01
    before = _snapshot(peers.alice)
    with pytest.raises(DecryptionError):
        peers.alice.decrypt(kind, bytes(tampered), peers.rng)
    assert _snapshot(peers.alice) == before
    assert peers.to_alice((kind, data)) == b"reply"


def test_tampered_prekey_message_creates_no_session() -> None:
    peers = Peers()
    kind, data = peers.alice.encrypt(b"hello")
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(kind, tampered, peers.rng, peers.prekeys)
    assert peers.bob.open is None and not peers.bob.archived
    assert peers.to_bob((kind, data)) == b"hello"


def test_duplicates_are_rejected_with_state_unchanged() -> None:
    peers = Peers()
    hello = peers.alice.encrypt(b"hello")
    peers.to_bob(hello)
    reply = peers.bob.encrypt(b"reply")
    peers.to_alice(reply)
    for session, wire in ((peers.bob, hello), (peers.alice, reply)):
        before = _snapshot(session)
        with pytest.raises(DecryptionError):
            session.decrypt(wire[0], wire[1], peers.rng, peers.prekeys)
        assert _snapshot(session) == before


def test_prekey_message_for_unknown_prekeys() -> None:
    peers = Peers()
    wire = peers.alice.encrypt(b"hello")
    del peers.prekeys.one_time[9]  # already used: a replay after the session was dropped
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(wire[0], wire[1], peers.rng, peers.prekeys)
    with pytest.raises(DecryptionError):
        peers.bob.decrypt(wire[0], wire[1], peers.rng, None)
    assert peers.bob.open is None


def test_beyond_bounds_rejected_with_state_unchanged() -> None:
    peers = Peers(params=RatchetParams(max_skip_gap=5))
    peers.to_bob(peers.alice.encrypt(b"start"))
    held = [peers.alice.encrypt(b"%d" % i) for i in range(7)]
    before = _snapshot(peers.bob)
    with pytest.raises(DecryptionError):
        peers.to_bob(held[6])  # 6 ahead of the next expected message
    assert _snapshot(peers.bob) == before
    assert peers.to_bob(held[5]) == b"5"  # 5 ahead: fine
    assert [peers.to_bob(held[i]) for i in range(5)] == [b"0", b"1", b"2", b"3", b"4"]


def test_late_message_for_an_archived_session() -> None:
    peers = Peers()
    early = peers.alice.encrypt(b"early")
    late = peers.alice.encrypt(b"late")
    peers.to_bob(early)
    peers.alice.close()
    peers.prekeys.one_time[10] = KeyPair.generate(peers.rng)
    bundle = X3DHBundle(
        2222,
        peers.bundle.identity_key,
        5,
        peers.bundle.signed_prekey,
        peers.bundle.signed_prekey_signature,
        10,
        peers.prekeys.one_time[10].public,
    )
    peers.alice.initiate(bundle, peers.rng)
    assert peers.to_bob(peers.alice.encrypt(b"new")) == b"new"
    assert len(peers.bob.archived) == 1
    assert peers.to_bob(late) == b"late"  # decrypted by the archived session
    assert peers.to_alice(peers.bob.encrypt(b"on the new one")) == b"on the new one"


def test_sessions_round_trip_through_bytes() -> None:
    peers = Peers()
    peers.to_bob(peers.alice.encrypt(b"a"))
    held = peers.bob.encrypt(b"held")
    peers.to_alice(peers.bob.encrypt(b"b"))
    alice = Session.parse(peers.alice.serialize(), peers.alice.identity)
    assert alice.serialize() == peers.alice.serialize()
    assert alice.decrypt(held[0], held[1], peers.rng).plaintext == b"held"
    with pytest.raises(ValueError):
        Session.parse(b"\x94\x03\x00\xc2\x90", peers.alice.identity)  # version 3
    with pytest.raises(ValueError):
        Session.parse(b"garbage", peers.alice.identity)


@pytest.mark.parametrize("seed", range(3))
def test_long_randomized_conversation(seed: int) -> None:
    """Both sides send in bursts; delivery is shuffled, with some messages held back long."""
    peers = Peers(seed)
    shuffle = random.Random(seed)
    peers.to_bob(peers.alice.encrypt(b"hello"))
    in_flight: list[tuple[str, Wire, bytes]] = []
    delivered = 0
    for turn in range(60):
        for _ in range(shuffle.randint(0, 6)):
            sender = shuffle.choice(["alice", "bob"])
            text = f"{sender} {turn} {len(in_flight)} {shuffle.random()}".encode()
            wire = (peers.alice if sender == "alice" else peers.bob).encrypt(text)
            in_flight.append((sender, wire, text))
        shuffle.shuffle(in_flight)
        for _ in range(shuffle.randint(0, len(in_flight))):
            sender, wire, text = in_flight.pop()
            receive = peers.to_bob if sender == "alice" else peers.to_alice
            assert receive(wire) == text
            delivered += 1
    for sender, wire, text in in_flight:
        assert (peers.to_bob if sender == "alice" else peers.to_alice)(wire) == text
        delivered += 1
    assert delivered > 100


_FUZZ_PEERS = Peers(seed=99)
_FUZZ_PEERS.to_bob(_FUZZ_PEERS.alice.encrypt(b"established"))
_FUZZ_WIRE = _FUZZ_PEERS.bob.encrypt(b"reply")


@given(st.sampled_from(list(MessageType)), st.binary(max_size=300), st.integers(0, 400))
def test_fuzz_decrypt_only_raises_decryption_error(
    kind: MessageType, garbage: bytes, cut: int
) -> None:
    before = _snapshot(_FUZZ_PEERS.alice)
    mutated = _FUZZ_WIRE[1][:cut] + garbage
    if mutated == _FUZZ_WIRE[1]:
        mutated += b"\x00"  # the untouched message would (rightly) decrypt
    for data in (garbage, mutated, b"\x33" + garbage, b"\x44" + garbage):
        with pytest.raises(DecryptionError):
            _FUZZ_PEERS.alice.decrypt(kind, data, _FUZZ_PEERS.rng, _FUZZ_PEERS.prekeys)
    assert _snapshot(_FUZZ_PEERS.alice) == before
