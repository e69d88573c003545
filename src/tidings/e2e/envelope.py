"""The end-to-end envelope: what a SEND target's payload holds between two devices.

The relay forwards each target's payload without reading it (G6). Inside, one type byte says
how the rest is to be opened::

    0x01 ‖ WhisperMessage           a message of an established session (libsignal type 1)
    0x03 ‖ PreKeyWhisperMessage     a message that may start a session (libsignal type 3)
    0x10 ‖ content                  unencrypted: only a RETRY_REQUEST (tidings.delivery.content)

The encrypted types carry `tidings.e2e.padding.pad` of the content bytes. Type 0x10 exists for
one purpose: to ask a sender device to rebuild a broken session and send again, which cannot
travel in that broken session (Signal's ``PlaintextContent`` with a DecryptionErrorMessage). A
receiver accepts nothing else in it, so a relay cannot inject readable messages.

Invariants: `open_envelope` returns a known type and a non-empty body, or raises
`tidings.errors.DecryptionError`; nothing else, whatever the bytes.
"""

from __future__ import annotations

from enum import IntEnum

from tidings.errors import DecryptionError

from .session import MessageType

__all__ = ["EnvelopeType", "open_envelope", "seal_envelope"]


class EnvelopeType(IntEnum):
    """The first byte of a payload (stable: never renumber)."""

    WHISPER = int(MessageType.WHISPER)
    PREKEY = int(MessageType.PREKEY)
    PLAINTEXT = 0x10


_TYPES = frozenset(int(t) for t in EnvelopeType)


def seal_envelope(kind: EnvelopeType, body: bytes) -> bytes:
    """The payload: the type byte, then ``body``."""
    return bytes([kind]) + body


def open_envelope(payload: bytes) -> tuple[EnvelopeType, bytes]:
    """Split a payload into its type and body.

    Raises:
        DecryptionError: empty, or an unknown type.
    """
    if len(payload) < 2 or payload[0] not in _TYPES:
        raise DecryptionError()
    return EnvelopeType(payload[0]), payload[1:]
