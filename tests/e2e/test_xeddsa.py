"""e2e.xeddsa: libsignal's signatures from the vectors verify; anything else does not."""

from __future__ import annotations

import pytest

from tidings.e2e import PublicKey, xeddsa_verify

from ._support import load_vectors


def _signed_prekeys() -> list[tuple[PublicKey, bytes, bytes]]:
    found = []
    for test in load_vectors("libsignal-js-testvectors.json")["tests"]:
        for _operation, step in test["vectors"]:
            if "getKeys" in step:
                spk = step["getKeys"]["devices"][0]["signedPreKey"]
                found.append(
                    (
                        PublicKey.parse(bytes.fromhex(step["getKeys"]["identityKey"])),
                        bytes.fromhex(spk["publicKey"]),
                        bytes.fromhex(spk["signature"]),
                    )
                )
    return found


SIGNED = _signed_prekeys()


@pytest.mark.parametrize(("key", "message", "signature"), SIGNED)
def test_libsignal_signatures_verify(key: PublicKey, message: bytes, signature: bytes) -> None:
    assert xeddsa_verify(key, message, signature)


@pytest.mark.parametrize(("key", "message", "signature"), SIGNED[:1])
def test_every_bit_flip_fails(key: PublicKey, message: bytes, signature: bytes) -> None:
    for position in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[position // 8] ^= 1 << (position % 8)
        assert not xeddsa_verify(key, message, bytes(flipped))
    assert not xeddsa_verify(key, message[:-1] + bytes([message[-1] ^ 1]), signature)


def test_malformed_inputs_are_false() -> None:
    key, message, signature = SIGNED[0]
    assert not xeddsa_verify(key, message, signature[:63])
    assert not xeddsa_verify(key, message, signature + b"\x00")
    minus_one = PublicKey((2**255 - 20).to_bytes(32, "little"))
    assert not xeddsa_verify(minus_one, message, signature)
    assert not xeddsa_verify(PublicKey(bytes(32)), message, signature)
