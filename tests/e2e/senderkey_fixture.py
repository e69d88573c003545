"""Our sender-key vectors from fixed seeds: the golden bytes of tests/e2e/test_senderkey.py and
the input libsignal decrypts in tests/vectors/senderkey/generate.mjs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

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


def ours_vectors() -> dict[str, Any]:
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
