"""The payload of a tidings sealed send (docs/protocol.md §14.2): a SEND target's payload, its
message id and the sender certificate, sealed (v1, :mod:`.sealed`) to the recipient device.

A SEALED_SEND names no sender and its DELIVER (kind 3) carries the sender's random tag, not the
message id. So what the relay would have carried in the clear goes inside::

    USMC.type    = 2 (message) for a 0x01 envelope, 1 (prekey message) for 0x03,
                   8 (plaintext) for 0x10  (libsignal's types, matching the envelope's byte)
    USMC.sender  = the sender device's certificate (issued by the relay, SENDER_CERT)
    USMC.content = message_id (16 bytes) || envelope (the payload SEND would have carried)
    payload      = seal(USMC, sender identity, recipient device's identity key)

The recipient opens it with its identity key, validates the certificate against the relay's
static key (the trust root it already pins) at ``now``, and then handles ``envelope`` as the
payload of a DELIVER from ``(certificate.account, certificate.device)`` with that message id.

Sans-I/O and pure: randomness is injected.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecryptionError
from ..wire.limits import MESSAGE_ID_LEN
from .certificates import CertificateError, SenderCertificate
from .envelope import EnvelopeType
from .keys import IdentityKeyPair, PublicKey
from .sealed import (
    TYPE_MESSAGE,
    TYPE_PLAINTEXT_CONTENT,
    TYPE_PREKEY_MESSAGE,
    Rng,
    SealedContent,
    open_sealed,
    seal,
)

__all__ = ["OpenedPayload", "SealedCertificateRefused", "open_payload", "seal_payload"]

_TYPE_OF_ENVELOPE = {
    EnvelopeType.WHISPER: TYPE_MESSAGE,
    EnvelopeType.PREKEY: TYPE_PREKEY_MESSAGE,
    EnvelopeType.PLAINTEXT: TYPE_PLAINTEXT_CONTENT,
}


class SealedCertificateRefused(DecryptionError):
    """The sealed payload opened, but its sender certificate is not valid (not signed under
    the trust root, or expired): the message must not be believed to come from its sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OpenedPayload:
    """What a sealed payload holds: who sent it (as the relay certified), the message id, and
    the envelope to open as a DELIVER's payload."""

    account: str
    device: int
    identity_key: PublicKey
    message_id: bytes
    envelope: bytes
    certificate: SenderCertificate


def seal_payload(
    message_id: bytes,
    envelope: bytes,
    certificate: SenderCertificate,
    sender: IdentityKeyPair,
    recipient: PublicKey,
    rng: Rng,
) -> bytes:
    """``envelope`` (a SEND target's payload) and its ``message_id``, sealed to ``recipient``.

    Raises:
        ValueError: a message id that is not 16 bytes, an envelope of an unknown type, or a
            certificate for another identity key than ``sender``'s.
    """
    if len(message_id) != MESSAGE_ID_LEN:
        raise ValueError(f"a message id is {MESSAGE_ID_LEN} bytes")
    if not envelope or envelope[0] not in _TYPE_OF_ENVELOPE:
        raise ValueError("not a tidings envelope")
    if certificate.identity_key.raw != sender.public.raw:
        raise ValueError("the certificate names another identity key than the sender's")
    content = SealedContent(
        _TYPE_OF_ENVELOPE[EnvelopeType(envelope[0])], certificate, message_id + envelope
    )
    return seal(content, sender, recipient, rng)


def open_payload(
    data: bytes, recipient: IdentityKeyPair, trust_root: PublicKey, now_ms: int
) -> OpenedPayload:
    """Open a DELIVER kind 3 payload sealed to ``recipient``.

    Raises:
        SealedCertificateRefused: it opened, but the certificate is not valid at ``now_ms``
            under ``trust_root``.
        DecryptionError: anything else that is wrong (not sealed to us, tampered, a type that
            does not match its envelope, a content too short).
    """
    content = open_sealed(data, recipient)
    inner = content.content
    if len(inner) <= MESSAGE_ID_LEN:
        raise DecryptionError()
    message_id, envelope = inner[:MESSAGE_ID_LEN], inner[MESSAGE_ID_LEN:]
    if _TYPE_OF_ENVELOPE.get(envelope[0]) != content.msg_type:  # type: ignore[call-overload]
        raise DecryptionError()
    cert = content.sender
    try:
        cert.validate(trust_root, now_ms)
    except CertificateError as exc:
        raise SealedCertificateRefused(str(exc)) from None
    return OpenedPayload(cert.account, cert.device, cert.identity_key, message_id, envelope, cert)
