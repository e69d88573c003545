"""Helpers of the e2e tests: vector loading, injected key sources, a prekey store, content."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tidings.e2e import KeyPair

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "signal"

# libsignal's PushMessageContent (the test vectors' plaintext): body = 1, flags = 4.
END_SESSION = 1


def load_vectors(name: str) -> dict[str, Any]:
    """One of the signal vector files, whose ``source`` field names where it came from."""
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    assert data["source"]
    return data


class KeyQueue:
    """An rng that hands out queued private keys: the vectors' "next generated key pairs"."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def push(self, hex_key: str) -> None:
        self.queue.append(bytes.fromhex(hex_key))

    def __call__(self, n: int) -> bytes:
        assert n == 32, "the sessions draw only 32-byte private keys"
        return self.queue.pop(0)


def seeded_rng(seed: int) -> Any:
    """A deterministic rng for property tests."""
    generator = random.Random(seed)

    def rng(n: int) -> bytes:
        return generator.randbytes(n)

    return rng


class DictPreKeys:
    """An in-memory prekey store (implements ``tidings.e2e.LocalKemPreKeys``)."""

    def __init__(self) -> None:
        self.signed: dict[int, KeyPair] = {}
        self.one_time: dict[int, KeyPair] = {}
        self.kem: dict[int, bytes] = {}

    def signed_prekey(self, prekey_id: int) -> KeyPair | None:
        return self.signed.get(prekey_id)

    def one_time_prekey(self, prekey_id: int) -> KeyPair | None:
        return self.one_time.get(prekey_id)

    def kem_prekey(self, prekey_id: int) -> bytes | None:
        return self.kem.get(prekey_id)


def encode_content(body: str | None, flags: int | None) -> bytes:
    """A PushMessageContent with ``body`` (field 1) or ``flags`` (field 4)."""
    out = b""
    if body is not None:
        raw = body.encode()
        assert len(raw) < 128
        out += bytes([0x0A, len(raw)]) + raw
    if flags is not None:
        assert flags < 128
        out += bytes([0x20, flags])
    return out


def decode_content(data: bytes) -> tuple[str | None, int | None]:
    """Inverse of `encode_content` for the short contents of the vectors."""
    body: str | None = None
    flags: int | None = None
    pos = 0
    while pos < len(data):
        key = data[pos]
        if key == 0x0A:
            length = data[pos + 1]
            body = data[pos + 2 : pos + 2 + length].decode()
            pos += 2 + length
        elif key == 0x20:
            flags = data[pos + 1]
            pos += 2
        else:
            raise AssertionError(f"unexpected content field {key:#x}")
    return body, flags
