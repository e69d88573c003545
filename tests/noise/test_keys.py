"""X25519 keys: RFC 7748 known answer, the injected RNG, fingerprints."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tidings.errors import HandshakeError
from tidings.noise import fingerprint, generate_keypair, public_key
from tidings.noise.keys import dh

# RFC 7748 §6.1 (Alice).
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_public_key_rfc7748() -> None:
    assert public_key(RFC7748_PRIVATE) == RFC7748_PUBLIC


def test_generate_keypair_uses_only_the_injected_rng() -> None:
    requests: list[int] = []

    def rng(n: int) -> bytes:
        requests.append(n)
        return RFC7748_PRIVATE

    assert generate_keypair(rng) == (RFC7748_PRIVATE, RFC7748_PUBLIC)
    assert requests == [32]


def test_generate_keypair_rejects_a_short_rng() -> None:
    with pytest.raises(ValueError):
        generate_keypair(lambda n: bytes(n - 1))


def test_fingerprint_format() -> None:
    text = fingerprint(RFC7748_PUBLIC)
    assert re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){7}", text)
    assert fingerprint(RFC7748_PUBLIC) == text
    assert fingerprint(public_key(bytes(32))) != text
    with pytest.raises(ValueError):
        fingerprint(RFC7748_PUBLIC[:31])


def test_fingerprint_known_answer() -> None:
    # The first 16 bytes of SHA-256(RFC 7748 Alice public key), grouped by 4 hex digits.
    assert fingerprint(RFC7748_PUBLIC) == "300c 9c96 03b9 2a4b 39ed 3958 bf92 4011"


def test_dh_rejects_low_order_points() -> None:
    private = X25519PrivateKey.from_private_bytes(RFC7748_PRIVATE)
    with pytest.raises(HandshakeError):
        dh(private, bytes(32))  # the point 0: all-zero shared secret
    with pytest.raises(HandshakeError):
        dh(private, bytes(31))
