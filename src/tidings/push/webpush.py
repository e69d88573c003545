"""Message encryption for Web Push (RFC 8291) in the ``aes128gcm`` content coding (RFC 8188).

A device's push subscription gives the sender two values: the receiver's P-256 public key
(``p256dh``, 65 bytes uncompressed) and a 16-byte authentication secret (``auth``). Per
message the sender draws an ephemeral P-256 key pair and a 16-byte salt::

    ecdh   = ECDH(sender ephemeral, receiver public)
    IKM    = HKDF-SHA256(salt = auth, ikm = ecdh,
                         info = "WebPush: info" || 0x00 || receiver public || sender public, 32)
    CEK    = HKDF-SHA256(salt, IKM, info = "Content-Encoding: aes128gcm" || 0x00, 16)
    NONCE  = HKDF-SHA256(salt, IKM, info = "Content-Encoding: nonce" || 0x00, 12)
    body   = salt (16) || rs (4, big-endian) || idlen (1) = 65 || sender public (65)
             || AES-128-GCM(CEK, NONCE, plaintext || 0x02 || padding zeros)

One record (the wake-ups are tiny). Pinned by RFC 8291's Appendix A. Sans-I/O: the ephemeral
key and the salt are the caller's (``rng``), so the example is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AUTH_LEN",
    "HEADER_LEN",
    "PUBLIC_LEN",
    "RECORD_SIZE",
    "PushKeys",
    "WebPushError",
    "decrypt",
    "encrypt",
    "public_bytes",
]

#: The authentication secret's length (RFC 8291 §3.2).
AUTH_LEN = 16
#: An uncompressed P-256 point: 0x04 || x || y.
PUBLIC_LEN = 65
#: The record size written in the header: 4,096, what push services accept (RFC 8291 §4).
RECORD_SIZE = 4096
#: salt (16) + rs (4) + idlen (1) + the sender's public key (65).
HEADER_LEN = 16 + 4 + 1 + PUBLIC_LEN
_TAG = 16

Rng = Callable[[int], bytes]


class WebPushError(ValueError):
    """A push message that does not decrypt, or keys that are not P-256 push keys."""


def public_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed form of a P-256 key's public point."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _point(data: bytes) -> ec.EllipticCurvePublicKey:
    if len(data) != PUBLIC_LEN or data[0] != 4:
        raise WebPushError("a push key is an uncompressed P-256 point (65 bytes, 0x04 first)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        raise WebPushError("not a point on P-256") from None


def _scalar(rng: Rng) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from 32 bytes of ``rng`` (drawn again in the rare case they are 0
    or not below the group order)."""
    while True:
        try:
            return ec.derive_private_key(int.from_bytes(rng(32), "big"), ec.SECP256R1())
        except ValueError:
            continue


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _keys(
    salt: bytes, auth: bytes, ecdh: bytes, receiver: bytes, sender: bytes
) -> tuple[bytes, bytes]:
    ikm = _hkdf(auth, ecdh, b"WebPush: info\x00" + receiver + sender, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    return cek, nonce


@dataclass(frozen=True)
class PushKeys:
    """A receiver's push keys: its P-256 private key and authentication secret (what a push
    subscription publishes is :attr:`public` and :attr:`auth`)."""

    private: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def from_bytes(cls, private: bytes, auth: bytes) -> PushKeys:
        """From the 32-byte private scalar and the 16-byte secret."""
        if len(private) != 32 or len(auth) != AUTH_LEN:
            raise WebPushError("push keys are a 32-byte P-256 scalar and a 16-byte secret")
        try:
            key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
        except ValueError:
            raise WebPushError("not a P-256 private key") from None
        return cls(key, auth)

    @classmethod
    def generate(cls, rng: Rng) -> PushKeys:
        """New keys from ``rng``: the scalar, then the secret."""
        return cls(_scalar(rng), rng(AUTH_LEN))

    @property
    def public(self) -> bytes:
        return public_bytes(self.private)

    def private_bytes(self) -> bytes:
        return self.private.private_numbers().private_value.to_bytes(32, "big")


def encrypt(
    plaintext: bytes,
    receiver_public: bytes,
    auth: bytes,
    rng: Rng,
    pad_to: int = 0,
) -> bytes:
    """The ``aes128gcm`` body of ``plaintext`` for a subscription's keys, padded with zeros
    so the record holds at least ``pad_to`` bytes of plaintext (sizes say nothing)."""
    if len(auth) != AUTH_LEN:
        raise WebPushError("the authentication secret is 16 bytes")
    receiver = _point(receiver_public)
    ephemeral = _scalar(rng)  # then the salt: RFC 8291's example draws in this order
    salt = rng(16)
    sender = public_bytes(ephemeral)
    cek, nonce = _keys(salt, auth, ephemeral.exchange(ec.ECDH(), receiver), receiver_public, sender)
    record = plaintext + b"\x02" + bytes(max(0, pad_to - len(plaintext)))
    if len(record) + _TAG > RECORD_SIZE:
        raise WebPushError(f"a push message is at most {RECORD_SIZE - _TAG - 1} bytes")
    header = salt + RECORD_SIZE.to_bytes(4, "big") + bytes([PUBLIC_LEN]) + sender
    return header + AESGCM(cek).encrypt(nonce, record, None)


def decrypt(body: bytes, keys: PushKeys) -> bytes:
    """What a receiver reads of an ``aes128gcm`` body (one record).

    Raises:
        WebPushError: not such a body, not for these keys, or tampered.
    """
    if len(body) < HEADER_LEN + _TAG + 1:
        raise WebPushError("too short to be an aes128gcm push message")
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    if idlen != PUBLIC_LEN or rs < 18:
        raise WebPushError("the header does not carry a P-256 sender key")
    sender = body[21 : 21 + PUBLIC_LEN]
    ciphertext = body[HEADER_LEN:]
    if len(ciphertext) > rs:
        raise WebPushError("more than one record: not a message of ours")
    ecdh = keys.private.exchange(ec.ECDH(), _point(sender))
    cek, nonce = _keys(salt, keys.auth, ecdh, keys.public, sender)
    try:
        record = AESGCM(cek).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise WebPushError("the message does not decrypt with these keys") from None
    end = record.rstrip(b"\x00")
    if not end.endswith(b"\x02"):
        raise WebPushError("the record has no last-record delimiter")
    return end[:-1]
