"""The payload of a tidings sealed group send (docs/protocol.md §14.3): a group message, its
message id and the sender certificate, sealed once (v2, :mod:`.sealed_v2`) for every member
device.

A SEALED_MULTI_SEND names no sender and its DELIVERs (kind 3) carry the sender's random tag, not
the message id. So what the relay would have carried in the clear goes inside, as for a
one-to-one sealed send (:mod:`.sealed_payload`)::

    USMC.type    = 7 (sender-key message: libsignal's type of a group message)
    USMC.sender  = the sender device's certificate (issued by the relay, SENDER_CERT)
    USMC.content = message_id (16 bytes) || 0x47 0x01 || GROUP_MESSAGE content
                   (0x47 0x01 || GROUP_MESSAGE is exactly what an unsealed group multi-send
                   delivers as part || shared: protocol §13)
    shared, headers = seal_multi(USMC, sender identity, the member devices' identity keys)
    device i's part = 0x22 || C_i || AT_i;  it is delivered part || shared

The recipient opens it with its identity key (``open_sealed_v2``), validates the certificate
against the relay's static key at ``now``, and then handles ``0x47 0x01 || GROUP_MESSAGE`` as
the payload of a DELIVER from ``(certificate.account, certificate.device)`` with that message
id — the group message path of today.

Sans-I/O and pure: randomness is injected.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DecryptionError
from ..wire.limits import MESSAGE_ID_LEN
from .certificates import CertificateError, SenderCertificate
from .keys import IdentityKeyPair, PublicKey
from .sealed import TYPE_SENDERKEY_MESSAGE, Rng, SealedContent
from .sealed_payload import OpenedPayload, SealedCertificateRefused
from .sealed_v2 import SEALED_V2, open_sealed_v2, seal_multi

__all__ = ["GROUP_ENVELOPE", "open_group_payload", "seal_group"]

#: What the envelope of a sealed group message starts with: the unsealed group part (§13).
GROUP_ENVELOPE = b"\x47\x01"


def seal_group(
    message_id: bytes,
    envelope: bytes,
    certificate: SenderCertificate,
    sender: IdentityKeyPair,
    recipients: Sequence[PublicKey],
    rng: Rng,
) -> tuple[bytes, list[bytes]]:
    """``envelope`` (``0x47 0x01 || GROUP_MESSAGE``) and its ``message_id`` sealed once for
    the ``recipients`` (one identity key per device): the shared part and each device's part
    (``0x22 || C_i || AT_i``), in order.

    Raises:
        ValueError: a message id that is not 16 bytes, an envelope that is not a group one,
            or a certificate for another identity key than ``sender``'s.
    """
    if len(message_id) != MESSAGE_ID_LEN:
        raise ValueError(f"a message id is {MESSAGE_ID_LEN} bytes")
    if not envelope.startswith(GROUP_ENVELOPE):
        raise ValueError("not a group envelope")
    if certificate.identity_key.raw != sender.public.raw:
        raise ValueError("the certificate names another identity key than the sender's")
    content = SealedContent(TYPE_SENDERKEY_MESSAGE, certificate, message_id + envelope)
    shared, headers = seal_multi(content, sender, recipients, rng)
    return shared, [bytes([SEALED_V2]) + h for h in headers]


def open_group_payload(
    data: bytes, recipient: IdentityKeyPair, trust_root: PublicKey, now_ms: int
) -> OpenedPayload:
    """Open a DELIVER kind 3 payload that is a v2 received message (``0x22 …``).

    Raises:
        SealedCertificateRefused: it opened, but the certificate is not valid at ``now_ms``
            under ``trust_root``.
        DecryptionError: anything else that is wrong (not sealed to us, tampered, not a
            sender-key message, not a group envelope, a content too short).
    """
    content = open_sealed_v2(data, recipient)
    inner = content.content
    if content.msg_type != TYPE_SENDERKEY_MESSAGE or len(inner) <= MESSAGE_ID_LEN:
        raise DecryptionError()
    message_id, envelope = inner[:MESSAGE_ID_LEN], inner[MESSAGE_ID_LEN:]
    if not envelope.startswith(GROUP_ENVELOPE):
        raise DecryptionError()
    cert = content.sender
    try:
        cert.validate(trust_root, now_ms)
    except CertificateError as exc:
        raise SealedCertificateRefused(str(exc)) from None
    return OpenedPayload(cert.account, cert.device, cert.identity_key, message_id, envelope, cert)
