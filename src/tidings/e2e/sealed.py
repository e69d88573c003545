"""Sealed sender, version 1: the relay learns whom a message is for, not whom it is from.

The sender wraps what it would have sent — the message, its type, its **sender certificate**
(:mod:`.certificates`) — as an ``UnidentifiedSenderMessageContent`` and encrypts it to the
recipient device's identity key, so its own identity and certificate exist only inside
(libsignal's ``sealed_sender.rs``, v1)::

    e = a fresh X25519 key pair;   R = the recipient's identity key;   I = the sender's
    salt1 = "UnidentifiedDelivery" || R (33 bytes) || e.public (33 bytes)
    chain || key1 || mac1 = HKDF-SHA256(salt1, ikm = X25519(e, R), info = "", 96)
    encrypted_static  = AES-256-CTR(key1, I.public (33 bytes)) || HMAC-SHA256(mac1, ·)[:10]
    salt2 = chain || encrypted_static
    _ || key2 || mac2 = HKDF-SHA256(salt2, ikm = X25519(I, R), info = "", 96)
    encrypted_message = AES-256-CTR(key2, USMC) || HMAC-SHA256(mac2, ·)[:10]
    sealed = 0x11 || protobuf { 1: e.public   2: encrypted_static   3: encrypted_message }

(CTR from a zero counter block.) The second agreement uses the sender's identity key, so a
message that opens proves the sender holds it; the recipient then checks the certificate
inside names that key, and validates it against its pinned trust root.

Sans-I/O: the ephemeral key comes from the injected ``rng``. Peer input that fails raises
:class:`~tidings.errors.DecryptionError`, with no detail.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import DecryptionError
from . import protobuf
from .certificates import CertificateError, SenderCertificate
from .keys import IdentityKeyPair, KeyPair, PublicKey

__all__ = [
    "CONTENT_HINT_DEFAULT",
    "CONTENT_HINT_RESENDABLE",
    "SEALED_V1",
    "TYPE_MESSAGE",
    "TYPE_PREKEY_MESSAGE",
    "TYPE_SENDERKEY_MESSAGE",
    "SealedContent",
    "open_sealed",
    "seal",
]

#: The version byte of a sealed-sender v1 message: ``(1 << 4) | 1``.
SEALED_V1 = 0x11
#: What the sealed message carries (libsignal's ``UnidentifiedSenderMessage.Message.Type``).
TYPE_PREKEY_MESSAGE = 1
TYPE_MESSAGE = 2
TYPE_SENDERKEY_MESSAGE = 7
TYPE_PLAINTEXT_CONTENT = 8
#: How a recipient that cannot decrypt should behave (libsignal's ``ContentHint``).
CONTENT_HINT_DEFAULT = 0
CONTENT_HINT_RESENDABLE = 1
_SALT_PREFIX = b"UnidentifiedDelivery"
_MAC_LEN = 10

Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class SealedContent:
    """The inside of a sealed message (libsignal's UnidentifiedSenderMessageContent)."""

    msg_type: int
    sender: SenderCertificate
    content: bytes
    content_hint: int = CONTENT_HINT_DEFAULT
    group_id: bytes | None = None

    def serialize(self) -> bytes:
        out = (
            protobuf.uint32_field(1, self.msg_type)
            + protobuf.bytes_field(2, self.sender.serialize())
            + protobuf.bytes_field(3, self.content)
        )
        if self.content_hint != CONTENT_HINT_DEFAULT:
            out += protobuf.uint32_field(4, self.content_hint)
        if self.group_id is not None:
            out += protobuf.bytes_field(5, self.group_id)
        return out

    @classmethod
    def parse(cls, data: bytes) -> SealedContent:
        """Raises :class:`DecryptionError` if it does not parse."""
        try:
            fields = protobuf.decode(data)
            msg_type, cert, content = fields.get(1), fields.get(2), fields.get(3)
            hint, group = fields.get(4, CONTENT_HINT_DEFAULT), fields.get(5)
            if not (
                isinstance(msg_type, int)
                and isinstance(cert, bytes)
                and isinstance(content, bytes)
                and isinstance(hint, int)
                and (group is None or isinstance(group, bytes))
            ):
                raise DecryptionError()
            return cls(msg_type, SenderCertificate.parse(cert), content, hint, group)
        except (protobuf.ProtobufError, CertificateError):
            raise DecryptionError() from None


def _hkdf96(salt: bytes, ikm: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=96, salt=salt, info=b"").derive(ikm)


def _ctr(key: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return cipher.update(data) + cipher.finalize()


def _seal_part(key: bytes, mac_key: bytes, plaintext: bytes) -> bytes:
    ciphertext = _ctr(key, plaintext)
    return ciphertext + hmac.digest(mac_key, ciphertext, hashlib.sha256)[:_MAC_LEN]


def _open_part(key: bytes, mac_key: bytes, data: bytes) -> bytes:
    if len(data) < _MAC_LEN:
        raise DecryptionError()
    ciphertext, mac = data[:-_MAC_LEN], data[-_MAC_LEN:]
    if not hmac.compare_digest(hmac.digest(mac_key, ciphertext, hashlib.sha256)[:_MAC_LEN], mac):
        raise DecryptionError()
    return _ctr(key, ciphertext)


def seal(content: SealedContent, sender: IdentityKeyPair, recipient: PublicKey, rng: Rng) -> bytes:
    """``content`` sealed to the recipient device's identity key (v1)."""
    ephemeral = KeyPair.generate(rng)
    salt = _SALT_PREFIX + recipient.serialize() + ephemeral.public.serialize()
    derived = _hkdf96(salt, ephemeral.dh(recipient))
    chain, key1, mac1 = derived[:32], derived[32:64], derived[64:]
    encrypted_static = _seal_part(key1, mac1, sender.public.serialize())
    derived2 = _hkdf96(chain + encrypted_static, sender.dh_key_pair.dh(recipient))
    encrypted_message = _seal_part(derived2[32:64], derived2[64:], content.serialize())
    return bytes([SEALED_V1]) + (
        protobuf.bytes_field(1, ephemeral.public.serialize())
        + protobuf.bytes_field(2, encrypted_static)
        + protobuf.bytes_field(3, encrypted_message)
    )


def open_sealed(data: bytes, recipient: IdentityKeyPair) -> SealedContent:
    """The content of a v1 sealed message to ``recipient``. The sender certificate inside is
    checked to name the key the message was sealed with; its signatures and expiry are the
    caller's to check (:meth:`SenderCertificate.validate`: the trust root and ``now``).

    Raises:
        DecryptionError: not a v1 sealed message to us, tampered, or a certificate for
            another key than the one that sealed it.
    """
    if not data or data[0] != SEALED_V1:
        raise DecryptionError()
    try:
        fields = protobuf.decode(data[1:])
    except protobuf.ProtobufError:
        raise DecryptionError() from None
    eph, encrypted_static, encrypted_message = fields.get(1), fields.get(2), fields.get(3)
    if not all(isinstance(x, bytes) for x in (eph, encrypted_static, encrypted_message)):
        raise DecryptionError()
    assert isinstance(eph, bytes) and isinstance(encrypted_static, bytes)
    assert isinstance(encrypted_message, bytes)
    try:
        ephemeral = PublicKey.parse(eph)
    except ValueError:
        raise DecryptionError() from None
    ours = recipient.dh_key_pair
    salt = _SALT_PREFIX + ours.public.serialize() + ephemeral.serialize()
    try:
        derived = _hkdf96(salt, ours.dh(ephemeral))
        chain, key1, mac1 = derived[:32], derived[32:64], derived[64:]
        static = PublicKey.parse(_open_part(key1, mac1, encrypted_static))
        derived2 = _hkdf96(chain + encrypted_static, ours.dh(static))
    except ValueError:  # a small-order key, or not a key
        raise DecryptionError() from None
    content = SealedContent.parse(_open_part(derived2[32:64], derived2[64:], encrypted_message))
    if not hmac.compare_digest(content.sender.identity_key.raw, static.raw):
        raise DecryptionError()  # a certificate of someone else inside
    return content
