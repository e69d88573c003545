"""e2e.padding: libsignal's 160-byte plaintext padding."""

from __future__ import annotations

import pytest

from tidings.e2e import pad, unpad
from tidings.errors import DecryptionError


@pytest.mark.parametrize(("length", "padded"), [(0, 159), (5, 159), (158, 159), (159, 319)])
def test_padded_lengths(length: int, padded: int) -> None:
    data = b"x" * length
    assert len(pad(data)) == padded
    assert unpad(pad(data)) == data


def test_padding_bytes() -> None:
    assert pad(b"\x0a\x01A") == b"\x0a\x01A\x80" + bytes(155)


def test_trailing_zeros_of_the_plaintext_survive() -> None:
    assert unpad(pad(b"a\x00\x00")) == b"a\x00\x00"


@pytest.mark.parametrize("data", [b"", bytes(10), b"abc", b"\x80\x01"])
def test_bad_padding(data: bytes) -> None:
    with pytest.raises(DecryptionError):
        unpad(data)
