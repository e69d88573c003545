"""The worked examples of the payload layer behind ``tests/vectors/signal/tidings-payloads.json``.

Produced once by `examples` (``python -m tests.e2e._payload_examples`` prints the file) and
frozen; ``tests/e2e/test_payload_vectors.py`` runs it again and compares, and
tests/wire/test_protocol_doc.py checks that docs/protocol.md §12 prints the same hex. Every value
here is deterministic: Ed25519 signatures are (RFC 8032), ML-KEM key generation from a seed is
(FIPS 203), and the contents are fixed. Identity seeds and the signed prekey are those of
``tidings-pqxdh.json``.
"""

from __future__ import annotations

import json
from typing import Any

from tidings.delivery import Message, Receipt, ReceiptKind, Resend, RetryRequest
from tidings.e2e import (
    EnvelopeType,
    IdentityKeyPair,
    KeyPair,
    generate_kem_prekey,
    generate_signed_prekey,
    pad,
    safety_number,
    safety_number_for_keys,
    seal_envelope,
)

from ._support import load_vectors

SOURCE = (
    "tidings: ours, frozen. Produced once by tests/e2e/_payload_examples.py and frozen; every "
    "value is deterministic (Ed25519 signing, ML-KEM-1024 key generation from a seed, "
    "MessagePack contents). Identity seeds and the signed prekey private key are those of "
    "tidings-pqxdh.json; the KEM seed is 64 bytes 0x00..0x3f."
)

PQXDH = load_vectors("tidings-pqxdh.json")
ALICE = IdentityKeyPair(bytes.fromhex(PQXDH["keys"]["alice_identity_seed"]))
BOB = IdentityKeyPair(bytes.fromhex(PQXDH["keys"]["bob_identity_seed"]))
#: A second device of alice's account, for the multi-device safety number.
ALICE2 = IdentityKeyPair(bytes(range(0x40, 0x60)))
SPK_PRIVATE = bytes.fromhex(PQXDH["keys"]["bob_signed_prekey_private"])
KEM_SEED = bytes(range(64))
MID = bytes(range(16))
SENT_AT = 1700000000.25


def _fixed(value: bytes) -> Any:
    def rng(n: int) -> bytes:
        assert n == len(value)
        return value

    return rng


def _identity(identity: IdentityKeyPair) -> dict[str, str]:
    return {
        "seed": identity.seed.hex(),
        "ed25519_public": identity.ed25519_public.hex(),
        "x25519_private": identity.dh_key_pair.private.hex(),
        "identity_key": identity.public.raw.hex(),
        "identity_key_33": identity.public.serialize().hex(),
    }


def _prekeys() -> dict[str, Any]:
    signed = generate_signed_prekey(5, BOB.sign, _fixed(SPK_PRIVATE), 1700000000).prekey
    kem = generate_kem_prekey(7, BOB.sign, _fixed(KEM_SEED), last_resort=True).prekey
    assert KeyPair.from_private(SPK_PRIVATE).public.raw == signed.public
    return {
        "signer": "bob",
        "signed_prekey": {
            "key_id": signed.key_id,
            "private": SPK_PRIVATE.hex(),
            "public": signed.public.hex(),
            "signed_message": signed.signed_message().hex(),
            "signature": signed.signature.hex(),
        },
        "kem_prekey": {
            "key_id": kem.key_id,
            "seed": KEM_SEED.hex(),
            "public": kem.public.hex(),
            "signed_message_prefix": kem.signed_message()[:1].hex(),
            "signature": kem.signature.hex(),
            "last_resort": kem.last_resort,
        },
    }


def _contents() -> dict[str, Any]:
    message = Message("alice:bob", 1, SENT_AT, b"hello, bob")
    cases: dict[str, Any] = {
        "message": (repr(message), message.serialize()),
        "receipt": (
            repr(Receipt(ReceiptKind.DELIVERED, (MID,), 1700000001.5)),
            Receipt(ReceiptKind.DELIVERED, (MID,), 1700000001.5).serialize(),
        ),
        "resend": (
            "Resend(message_id=000102…0f, message=<the message above>)",
            Resend(MID, message).serialize(),
        ),
        "retry_request": (
            repr(RetryRequest("alice", 1, (MID,))),
            RetryRequest("alice", 1, (MID,)).serialize(),
        ),
    }
    out = {name: {"value": value, "hex": data.hex()} for name, (value, data) in cases.items()}
    padded = pad(message.serialize())
    out["message_padded"] = {"length": len(padded), "hex": padded.hex()}
    retry = seal_envelope(EnvelopeType.PLAINTEXT, RetryRequest("alice", 1, (MID,)).serialize())
    out["retry_request_payload"] = {"hex": retry.hex()}
    return out


def _safety_numbers() -> dict[str, Any]:
    a, a2, b = (k.public.serialize() for k in (ALICE, ALICE2, BOB))
    return {
        "iterations": 5200,
        "one_device_each": {
            "local": ["alice", a.hex()],
            "remote": ["bob", b.hex()],
            "number": safety_number(a, "alice", b, "bob"),
        },
        "alice_with_two_devices": {
            "local": ["alice", a.hex(), a2.hex()],
            "remote": ["bob", b.hex()],
            "number": safety_number_for_keys([a, a2], "alice", [b], "bob"),
        },
    }


def examples() -> dict[str, Any]:
    """The whole vector file (see the module docstring)."""
    return {
        "source": SOURCE,
        "identities": {
            "alice": _identity(ALICE),
            "alice_device_2": _identity(ALICE2),
            "bob": _identity(BOB),
        },
        "prekeys": _prekeys(),
        "contents": _contents(),
        "safety_numbers": _safety_numbers(),
    }


if __name__ == "__main__":
    print(json.dumps(examples(), indent=1, ensure_ascii=False))
