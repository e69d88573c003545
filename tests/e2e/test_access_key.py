"""The unidentified-access key (docs/protocol.md §14.1), pinned by known answers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tidings.e2e.access_key import ACCESS_KEY_INFO, access_key


def test_known_answers() -> None:
    # HKDF-SHA256 (RFC 5869) without salt, info "tidings unidentified access key", 16 bytes.
    assert access_key(bytes(range(32))).hex() == "b4b1641d636fa1fb0b4300fb9d60fbf5"
    assert access_key(bytes(32)).hex() == "14c8061cb4d05c14e4880f14e9719705"


def test_it_is_rfc_5869_hkdf_written_out() -> None:
    ikm = b"\x42" * 32
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()  # no salt: HashLen zeros
    okm = hmac.new(prk, ACCESS_KEY_INFO + b"\x01", hashlib.sha256).digest()[:16]
    assert access_key(ikm) == okm


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_only_a_profile_key_has_an_access_key(bad: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        access_key(bad)
