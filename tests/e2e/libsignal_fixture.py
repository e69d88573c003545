"""Our bytes for libsignal to check, from fixed seeds: the golden bytes of
tests/e2e/test_senderkey.py and test_sealed.py, and the input of tests/vectors/libsignal/*.mjs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.e2e.keys import IdentityKeyPair, KeyPair
from tidings.e2e.sealed import CONTENT_HINT_RESENDABLE, TYPE_SENDERKEY_MESSAGE, SealedContent, seal
from tidings.e2e.sealed_v2 import received, seal_multi
from tidings.e2e.senderkey import SenderKeyRecord, group_encrypt, new_distribution

DISTRIBUTION_ID = bytes.fromhex("0f1e2d3c4b5a49788796a5b4c3d2e1f0")
#: The order libsignal decrypts our messages in: late ones, a jump, then the skipped ones.
ORDER = [0, 3, 1, 2, 7, 4, 6, 5]


class _Stream:
    def __init__(self, seed: bytes) -> None:
        self.seed, self.n, self.buf = seed, 0, b""

    def __call__(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += hashlib.sha256(self.seed + self.n.to_bytes(8, "big")).digest()
            self.n += 1
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def seeded_rng(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic byte stream: SHA-256(seed || counter) blocks."""
    return _Stream(seed)


def plaintext(i: int) -> bytes:
    return f"tidings group message {i}: ✓✓".encode() + bytes(range(i))


def ours_senderkey() -> dict[str, Any]:
    record, distribution = new_distribution(
        SenderKeyRecord(), DISTRIBUTION_ID, seeded_rng(b"tidings sender key vectors")
    )
    messages = []
    for i in range(8):
        record, message = group_encrypt(record, DISTRIBUTION_ID, plaintext(i))
        messages.append({"message": message.hex(), "plaintext": plaintext(i).hex()})
    return {
        "sender": {"name": "carol", "device": 2},
        "distribution": distribution.serialize().hex(),
        "messages": messages,
        "order": ORDER,
    }


def identity(name: bytes) -> IdentityKeyPair:
    return IdentityKeyPair(hashlib.sha256(b"tidings test identity " + name).digest())


TRUST_ROOT = identity(b"trust root")
SERVER_KEY = identity(b"server key")
SENDER = identity(b"carol.2")
#: The identity key of our recipient of libsignal's sealed message.
RECIPIENT = identity(b"bob.1")
#: libsignal's recipient of our sealed message (a fixed X25519 private key).
LIBSIGNAL_RECIPIENT = KeyPair.from_private(bytes([0x44]) * 32)
#: libsignal's second recipient of our multi-recipient (v2) message.
LIBSIGNAL_RECIPIENT_2 = KeyPair.from_private(bytes([0x45]) * 32)
EXPIRES_MS = 1_800_000_000_000
GROUP_ID = b"tidings group 02"


def ours_sealed() -> dict[str, Any]:
    server = ServerCertificate.issue(3, SERVER_KEY.public, TRUST_ROOT)
    cert = SenderCertificate.issue("carol", 2, SENDER.public, EXPIRES_MS, server, SERVER_KEY)
    inner = bytes.fromhex(ours_senderkey()["messages"][0]["message"])
    content = SealedContent(TYPE_SENDERKEY_MESSAGE, cert, inner, CONTENT_HINT_RESENDABLE, GROUP_ID)
    sealed = seal(content, SENDER, LIBSIGNAL_RECIPIENT.public, seeded_rng(b"sealed v1"))
    targets = [LIBSIGNAL_RECIPIENT, LIBSIGNAL_RECIPIENT_2]
    shared, headers = seal_multi(
        content, SENDER, [t.public for t in targets], seeded_rng(b"sealed v2")
    )
    return {
        "sealed": sealed.hex(),
        "v2_shared": shared.hex(),
        "v2_received": [
            {"private": t.private.hex(), "message": received(h, shared).hex()}
            for t, h in zip(targets, headers, strict=True)
        ],
        "recipient_private": LIBSIGNAL_RECIPIENT.private.hex(),
        "recipient_public": LIBSIGNAL_RECIPIENT.public.serialize().hex(),
        "trust_root_public": TRUST_ROOT.public.serialize().hex(),
        "account": "carol",
        "device": 2,
        "expires_ms": EXPIRES_MS,
        "msg_type": TYPE_SENDERKEY_MESSAGE,
        "content": inner.hex(),
        "content_hint": CONTENT_HINT_RESENDABLE,
        "group_id": GROUP_ID.hex(),
        "certificate": cert.serialize().hex(),
        "our_identity_public": RECIPIENT.public.serialize().hex(),
    }
