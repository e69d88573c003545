"""Plaintext padding of libsignal v3 clients: ``0x80`` then zeros, to ``160·k − 1`` bytes.

Padding hides the length of short messages to the nearest 160 bytes; AES-CBC's own PKCS#7
padding then brings ``160·k − 1`` bytes to ``160·k``. It is applied by the application around
`tidings.e2e.Session.encrypt` / `decrypt`, as libsignal's clients do.
"""

from __future__ import annotations

from tidings.errors import DecryptionError

__all__ = ["PAD_BLOCK", "pad", "unpad"]

#: Padded plaintexts are one byte short of a multiple of this.
PAD_BLOCK = 160


def pad(plaintext: bytes) -> bytes:
    """``plaintext || 0x80 || 0x00…`` to the smallest ``160·k − 1`` length that fits."""
    blocks = (len(plaintext) + 2 + PAD_BLOCK - 1) // PAD_BLOCK
    return (plaintext + b"\x80").ljust(blocks * PAD_BLOCK - 1, b"\x00")


def unpad(padded: bytes) -> bytes:
    """Strip the zeros and the ``0x80`` that `pad` added.

    Raises:
        DecryptionError: no ``0x80`` terminator after the trailing zeros.
    """
    stripped = padded.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise DecryptionError()
    return stripped[:-1]
