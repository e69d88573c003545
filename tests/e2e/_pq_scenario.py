"""The deterministic scenarios behind our frozen PQXDH-session and storage vectors.

Both ``tests/vectors/signal/tidings-pqxdh-session.json`` and ``tidings-storage.json`` were
produced once by these functions and frozen; the tests run them again and compare bytes. Keys
come from the vector files (the PQXDH keys from ``tidings-pqxdh.json``); the KEM encapsulation
is a fake that replays that file's frozen ciphertext and secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.e2e import (
    IdentityKeyPair,
    KeyPair,
    MessageType,
    PQXDHBundle,
    PreKeyBundle,
    Session,
    bundle_for_session,
    kem,
)
from tidings.e2e.prekeys import KEM_KEY_TYPE_MLKEM1024, KemPreKey, OneTimePreKey, SignedPreKey

from ._support import DictPreKeys, KeyQueue, load_vectors

PQXDH = load_vectors("tidings-pqxdh.json")
ALICE_REGISTRATION_ID, BOB_REGISTRATION_ID = 1111, 2222
SIGNED_PREKEY_ID, ONE_TIME_PREKEY_ID, KEM_PREKEY_ID = 5, 9, 7


def pqxdh_key(name: str) -> bytes:
    return bytes.fromhex(PQXDH["keys"][name])


ALICE = IdentityKeyPair(pqxdh_key("alice_identity_seed"))
BOB = IdentityKeyPair(pqxdh_key("bob_identity_seed"))
SPK = KeyPair.from_private(pqxdh_key("bob_signed_prekey_private"))
OPK = KeyPair.from_private(pqxdh_key("bob_one_time_prekey_private"))
KEM_SEED = pqxdh_key("bob_kem_seed")
KEM_CIPHERTEXT = bytes.fromhex(PQXDH["kem_ciphertext"])
KEM_SECRET = bytes.fromhex(PQXDH["expected"]["kem_shared_secret"])


def replay_encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """A fake `kem.encapsulate` returning the frozen ciphertext and secret."""
    assert public == kem.kem_public_key(KEM_SEED)
    return KEM_CIPHERTEXT, KEM_SECRET


def relay_bundle(kem_signature: bytes | None = None) -> PreKeyBundle:
    """Bob's bundle as the relay hands it out (``kem_signature`` overrides the real one)."""
    kem_public = kem.kem_public_key(KEM_SEED)
    signature = kem_signature or BOB.sign(bytes([KEM_KEY_TYPE_MLKEM1024]) + kem_public)
    return PreKeyBundle(
        BOB.public.raw,
        SignedPreKey(SIGNED_PREKEY_ID, SPK.public.raw, BOB.sign(SPK.public.serialize()), 0),
        OneTimePreKey(ONE_TIME_PREKEY_ID, OPK.public.raw),
        KemPreKey(KEM_PREKEY_ID, kem_public, signature, False),
    )


def session_bundle() -> PQXDHBundle:
    return bundle_for_session(relay_bundle(), registration_id=BOB_REGISTRATION_ID)


def bob_prekeys() -> DictPreKeys:
    prekeys = DictPreKeys()
    prekeys.signed[SIGNED_PREKEY_ID] = SPK
    prekeys.one_time[ONE_TIME_PREKEY_ID] = OPK
    prekeys.kem[KEM_PREKEY_ID] = KEM_SEED
    return prekeys


def queue(*hex_keys: str) -> KeyQueue:
    rng = KeyQueue()
    for key in hex_keys:
        rng.push(key)
    return rng


@dataclass
class Conversation:
    """What `conversation` produced: the wire messages and Alice's ratchet state at the end."""

    prekey_message: bytes
    replies: list[bytes]
    alice_whisper: bytes
    alice_ratchet_state: bytes


def conversation(keys: dict[str, str], plaintexts: dict[str, str]) -> Conversation:
    """Alice starts a v4 session and sends; Bob replies three times; Alice reads the third
    reply first (two keys skipped), then sends again."""
    alice = Session(ALICE.dh_key_pair, ALICE_REGISTRATION_ID)
    bob = Session(BOB.dh_key_pair, BOB_REGISTRATION_ID)
    alice_rng = queue(keys["alice_base"], keys["alice_ratchet_1"], keys["alice_ratchet_2"])
    alice.initiate_pq(session_bundle(), alice_rng, replay_encapsulate)
    kind, prekey_message = alice.encrypt(plaintexts["hello"].encode())
    received = bob.decrypt(kind, prekey_message, queue(keys["bob_ratchet_1"]), bob_prekeys())
    assert received.plaintext == plaintexts["hello"].encode()
    replies = [bob.encrypt(plaintexts[f"reply_{i}"].encode())[1] for i in (1, 2, 3)]
    got = alice.decrypt(MessageType.WHISPER, replies[2], alice_rng)
    assert got.plaintext == plaintexts["reply_3"].encode()
    assert alice.open is not None
    ratchet_state = alice.open.ratchet.serialize()
    _, alice_whisper = alice.encrypt(plaintexts["after"].encode())
    return Conversation(prekey_message, replies, alice_whisper, ratchet_state)


def stored_session(keys: dict[str, str]) -> Session:
    """Alice's record: an archived v4 session and an open v3 one, both still pending."""
    alice = Session(ALICE.dh_key_pair, ALICE_REGISTRATION_ID)
    bundle = session_bundle()
    alice.initiate_pq(
        bundle, queue(keys["alice_base"], keys["alice_ratchet_1"]), replay_encapsulate
    )
    alice.encrypt(b"pq")
    alice.close()
    alice.initiate(bundle.x3dh, queue(keys["alice_base_2"], keys["alice_ratchet_3"]))
    alice.encrypt(b"v3")
    return alice
