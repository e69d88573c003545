"""Known answers: libsignal's X3DH KATs and the 15 libsignal-protocol-javascript sessions.

The vectors live in ``tests/vectors/signal/`` (copied with their ``source`` field from the
shared ``crypto-vectors/signal/``). The sessions are driven as their ``harness`` field says
(libsignal-protocol-javascript ``test/SessionCipherTest.js``): ``ourBaseKey``,
``ourEphemeralKey`` and ``newEphemeralKey`` are queued and handed out as the next generated key
pairs (`KeyQueue` is the injected ``rng``); plaintexts are PushMessageContent protobufs, padded;
a sent ``endSession`` closes the open session afterwards. Every sent message must match the
expected ciphertext byte for byte, PreKeyWhisperMessages included.
"""

from __future__ import annotations

from typing import Any

import pytest

from tidings.e2e import (
    KeyPair,
    MessageType,
    PublicKey,
    Session,
    X3DHBundle,
    derive_session_keys,
    pad,
    unpad,
    xeddsa_verify,
)
from tidings.e2e.x3dh import initiator_dh_outputs, respond

from ._support import (
    END_SESSION,
    DictPreKeys,
    KeyQueue,
    decode_content,
    encode_content,
    load_vectors,
)

RATCHET_KAT = load_vectors("libsignal-ratchet-kat.json")
SESSIONS = load_vectors("libsignal-js-testvectors.json")


def _key(name: str) -> bytes:
    return bytes.fromhex(RATCHET_KAT["keys"][name])


def test_ratchet_kat_as_bob() -> None:
    keys = respond(
        KeyPair.from_private(_key("bob_identity_private")),
        KeyPair.from_private(_key("bob_signed_prekey_private")),
        None,
        PublicKey.parse(_key("alice_identity_public")),
        PublicKey.parse(_key("alice_base_public")),
    )
    expected = RATCHET_KAT["expected"]["bob_sender_chain_key (computed by Bob)"]
    assert keys.chain_key.hex() == expected


def test_ratchet_kat_as_alice() -> None:
    # The KAT's alice_base_private does not match alice_base_public (see its `profile`):
    # Alice's side uses only the private keys, as upstream does.
    bundle = X3DHBundle(
        registration_id=1,
        identity_key=PublicKey.parse(_key("bob_identity_public")),
        signed_prekey_id=1,
        signed_prekey=PublicKey.parse(_key("bob_signed_prekey_public")),
        signed_prekey_signature=bytes(64),  # not part of the KAT
    )
    outputs = initiator_dh_outputs(
        KeyPair.from_private(_key("alice_identity_private")),
        KeyPair.from_private(_key("alice_base_private")),
        bundle,
    )
    expected = RATCHET_KAT["expected"]["alice_receiver_chain_key (computed by Alice)"]
    assert derive_session_keys(outputs).chain_key.hex() == expected


def test_ratchet_kat_public_keys_match_private_keys() -> None:
    # alice_base and bob_ephemeral pairs do not match upstream; neither is used as a pair here
    # (bob_ephemeral is Bob's ratchet key, which X3DH does not involve).
    for who in ("bob_identity", "bob_signed_prekey", "alice_identity"):
        pair = KeyPair.from_private(_key(f"{who}_private"))
        assert pair.public.serialize() == _key(f"{who}_public")


def test_sessions_hold_83_steps() -> None:
    assert len(SESSIONS["tests"]) == 15
    assert sum(len(t["vectors"]) for t in SESSIONS["tests"]) == 83


def _bundle(get_keys: dict[str, Any]) -> X3DHBundle:
    device = get_keys["devices"][0]
    return X3DHBundle(
        registration_id=device["registrationId"],
        identity_key=PublicKey.parse(bytes.fromhex(get_keys["identityKey"])),
        signed_prekey_id=device["signedPreKey"]["keyId"],
        signed_prekey=PublicKey.parse(bytes.fromhex(device["signedPreKey"]["publicKey"])),
        signed_prekey_signature=bytes.fromhex(device["signedPreKey"]["signature"]),
        one_time_prekey_id=device["preKey"]["keyId"],
        one_time_prekey=PublicKey.parse(bytes.fromhex(device["preKey"]["publicKey"])),
    )


class Replay:
    """One vector session: our `Session`, the key queue and our prekeys."""

    def __init__(self) -> None:
        self.keys = KeyQueue()
        self.prekeys = DictPreKeys()
        self.session: Session | None = None
        self.registration_id = 0

    def _identity(self, step: dict[str, Any]) -> Session:
        if "registrationId" in step:
            self.registration_id = step["registrationId"]
        if self.session is None:
            identity = KeyPair.from_private(bytes.fromhex(step["ourIdentityKey"]))
            self.session = Session(identity, self.registration_id)
        elif "ourIdentityKey" in step:  # the vectors never change our identity mid-session
            assert self.session.identity.private.hex() == step["ourIdentityKey"]
        return self.session

    def send(self, step: dict[str, Any]) -> None:
        for name in ("ourBaseKey", "ourEphemeralKey"):
            if name in step:
                self.keys.push(step[name])
        session = self._identity(step)
        if "getKeys" in step:
            session.initiate(_bundle(step["getKeys"]), self.keys)
        if step.get("endSession"):
            content = encode_content(None, END_SESSION)
        else:
            content = encode_content(step["smsText"], None)
        kind, data = session.encrypt(pad(content))
        assert data.hex() == step["expectedCiphertext"]
        assert kind in (MessageType.PREKEY, MessageType.WHISPER)
        if step.get("endSession"):
            session.close()

    def receive(self, step: dict[str, Any]) -> None:
        if "newEphemeralKey" in step:
            self.keys.push(step["newEphemeralKey"])
        session = self._identity(step)
        if "ourSignedPreKey" in step:
            signed = KeyPair.from_private(bytes.fromhex(step["ourSignedPreKey"]))
            self.prekeys.signed[step["signedPreKeyId"]] = signed
        if "ourPreKey" in step:
            one_time = KeyPair.from_private(bytes.fromhex(step["ourPreKey"]))
            self.prekeys.one_time[step["preKeyId"]] = one_time
        message = bytes.fromhex(step["message"])
        result = session.decrypt(MessageType(step["type"]), message, self.keys, self.prekeys)
        if result.used_prekey_id is not None:
            del self.prekeys.one_time[result.used_prekey_id]
        body, flags = decode_content(unpad(result.plaintext))
        if step.get("expectTerminateSession"):
            assert flags == END_SESSION
        else:
            assert body == step["expectedSmsText"]


@pytest.mark.parametrize("test", SESSIONS["tests"], ids=[t["name"] for t in SESSIONS["tests"]])
def test_session_vectors(test: dict[str, Any]) -> None:
    replay = Replay()
    for operation, step in test["vectors"]:
        if operation == "sendMessage":
            replay.send(step)
        else:
            assert operation == "receiveMessage"
            replay.receive(step)
    assert replay.keys.queue == [], "every queued key pair was used"


def test_vector_bundles_are_signed_by_xeddsa() -> None:
    for test in SESSIONS["tests"]:
        for _operation, step in test["vectors"]:
            if "getKeys" in step:
                bundle = _bundle(step["getKeys"])
                assert bundle.verify_signature()
                forged = bundle.signed_prekey_signature[:-1] + b"\x00"
                assert not xeddsa_verify(
                    bundle.identity_key, bundle.signed_prekey.serialize(), forged
                )
