"""Device certificates and link proofs (docs/protocol.md §6.31): who vouches for a linked device.

A link code shown by ``tidings link`` is two halves: the relay's one-use code (the relay keeps
its hash) and a **link secret** the issuing device drew and never sends to the relay. The new
device registers with the relay half, then proves that it holds the secret *and* binds its own
identity key to it: the **link proof** is an HMAC-SHA256, under a key derived from the secret
with HKDF-SHA256, over ``(account, device id, identity key)``. The issuing device checks the
proof when the new device's DEVICE_INFO arrives (end to end, in a session whose identity key is
the one the proof names) and then signs a **device certificate** with its own identity key
(XEdDSA, :meth:`IdentityKeyPair.sign`). Contacts verify the certificate against the signer's
identity key they already pinned. The relay stores the certificate opaquely and cannot make
one: it never sees the secret, and has no identity key of the account.

Both byte layouts are fixed (big-endian integers, length-prefixed account), so that one
certificate has one encoding; tests/e2e/test_certificate.py pins them with golden bytes::

    signed part   "tidings-device-cert-v1" 0x00 | u8 len | account | u64 device_id
                  | identity_key (32) | u64 issuer_device_id | u64 issued_at (seconds)
    certificate   signed part | signature (64)
    proof input   "tidings-link-proof-v1" 0x00 | u8 len | account | u64 device_id | identity_key
    link proof    code_id (8) | HMAC-SHA256 (32)

Sans-I/O: no clock (``issued_at`` is an argument), no randomness (the secret is drawn by the
caller).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .keys import KEY_LEN, IdentityKeyPair, PublicKey
from .xeddsa import SIGNATURE_LEN, verify

__all__ = [
    "CERT_MAGIC",
    "LINK_CODE_ID_LEN",
    "LINK_PROOF_LEN",
    "LINK_SECRET_LEN",
    "MAX_CERTIFICATE",
    "CertificateError",
    "DeviceCertificate",
    "link_code_id",
    "link_proof",
    "link_proof_ok",
]

#: Domain separation of the signed part (a signature over it can mean nothing else).
CERT_MAGIC = b"tidings-device-cert-v1\x00"
#: Domain separation of the link proof's input, and the HKDF ``info`` of its key.
PROOF_MAGIC = b"tidings-link-proof-v1\x00"
#: Bytes of the link secret: 128 bits, as the relay's half, out of reach of guessing.
LINK_SECRET_LEN = 16
#: Bytes of a link code's id in a proof: enough to tell the issuer's few open codes apart.
LINK_CODE_ID_LEN = 8
#: Bytes of a link proof (code id and HMAC-SHA256).
LINK_PROOF_LEN = LINK_CODE_ID_LEN + 32
_ACCOUNT_MAX = 64  # the wire's account limit, in UTF-8 bytes
#: Longest certificate: the layout above with the longest account.
MAX_CERTIFICATE = len(CERT_MAGIC) + 1 + _ACCOUNT_MAX + 8 + KEY_LEN + 8 + 8 + SIGNATURE_LEN
_U64 = struct.Struct(">Q")


class CertificateError(ValueError):
    """Bytes that are not a device certificate, or one whose signature does not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _subject(magic: bytes, account: str, device_id: int, identity_key: bytes) -> bytes:
    if type(account) is not str:
        raise CertificateError("an account name is a string")
    name = account.encode()
    if not 1 <= len(name) <= _ACCOUNT_MAX:
        raise CertificateError(f"an account name is 1..{_ACCOUNT_MAX} bytes")
    if type(device_id) is not int or not 1 <= device_id < 1 << 63:
        raise CertificateError("a device id is 1..2^63-1")
    if type(identity_key) is not bytes or len(identity_key) != KEY_LEN:
        raise CertificateError(f"an identity key is {KEY_LEN} bytes")
    return magic + bytes([len(name)]) + name + _U64.pack(device_id) + identity_key


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """Device ``issuer`` of ``account`` vouches that device ``device_id`` holds ``identity_key``
    (the raw 32-byte X25519 form), since ``issued_at`` (whole seconds)."""

    account: str
    device_id: int
    identity_key: bytes
    issuer: int
    issued_at: int
    signature: bytes

    def __post_init__(self) -> None:
        _subject(CERT_MAGIC, self.account, self.device_id, self.identity_key)  # checks them
        issuer, issued_at = self.issuer, self.issued_at
        if type(issuer) is not int or not 1 <= issuer < 1 << 63 or issuer == self.device_id:
            raise CertificateError("the issuer is another device id")
        if type(issued_at) is not int or not 0 <= issued_at < 1 << 63:
            raise CertificateError("issued_at is whole seconds since the epoch")
        if type(self.signature) is not bytes or len(self.signature) != SIGNATURE_LEN:
            raise CertificateError(f"a signature is {SIGNATURE_LEN} bytes")

    def signed_part(self) -> bytes:
        """The bytes the issuer signs."""
        subject = _subject(CERT_MAGIC, self.account, self.device_id, self.identity_key)
        return subject + _U64.pack(self.issuer) + _U64.pack(self.issued_at)

    def serialize(self) -> bytes:
        """The certificate as the relay stores it."""
        return self.signed_part() + self.signature

    @classmethod
    def issue(
        cls,
        signer: IdentityKeyPair,
        account: str,
        issuer: int,
        device_id: int,
        identity_key: bytes,
        issued_at: int,
    ) -> DeviceCertificate:
        """Sign a certificate for ``account``.``device_id`` by device ``issuer`` (``signer``)."""
        unsigned = cls(account, device_id, identity_key, issuer, issued_at, bytes(SIGNATURE_LEN))
        return cls(
            account, device_id, identity_key, issuer, issued_at, signer.sign(unsigned.signed_part())
        )

    @classmethod
    def parse(cls, data: bytes) -> DeviceCertificate:
        """Parse a certificate (no signature check: see :meth:`verify`).

        Raises:
            CertificateError: not a certificate.
        """
        n = len(CERT_MAGIC)
        if len(data) > MAX_CERTIFICATE or len(data) < n + 1 or data[:n] != CERT_MAGIC:
            raise CertificateError("not a device certificate")
        size = data[n]
        rest = data[n + 1 + size :]
        if len(rest) != 8 + KEY_LEN + 8 + 8 + SIGNATURE_LEN:
            raise CertificateError("a device certificate of the wrong length")
        try:
            account = data[n + 1 : n + 1 + size].decode()
        except UnicodeDecodeError:
            raise CertificateError("the account name is not UTF-8") from None
        (device_id,) = _U64.unpack_from(rest, 0)
        key = rest[8 : 8 + KEY_LEN]
        (issuer,) = _U64.unpack_from(rest, 8 + KEY_LEN)
        (issued_at,) = _U64.unpack_from(rest, 16 + KEY_LEN)
        cert = cls(account, device_id, key, issuer, issued_at, rest[24 + KEY_LEN :])
        if cert.serialize() != data:  # one encoding per certificate
            raise CertificateError("a device certificate not in its canonical form")
        return cert

    def verify(self, issuer_key: bytes) -> bool:
        """Whether the signature is the issuer's, whose raw identity key is ``issuer_key``."""
        if len(issuer_key) != KEY_LEN:
            return False
        return verify(PublicKey(issuer_key), self.signed_part(), self.signature)


def link_code_id(relay_code: bytes) -> bytes:
    """The id of a link code in a proof: the start of SHA-256 of its relay half (which the
    relay knows anyway; the proof says which of the issuer's codes it answers)."""
    return hashlib.sha256(relay_code).digest()[:LINK_CODE_ID_LEN]


def _proof_key(secret: bytes) -> bytes:
    if len(secret) != LINK_SECRET_LEN:
        raise CertificateError(f"a link secret is {LINK_SECRET_LEN} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PROOF_MAGIC).derive(secret)


def link_proof(
    relay_code: bytes, secret: bytes, account: str, device_id: int, identity_key: bytes
) -> bytes:
    """The new device's proof that it holds ``secret`` and that ``identity_key`` is its own."""
    mac = hmac.new(
        _proof_key(secret), _subject(PROOF_MAGIC, account, device_id, identity_key), "sha256"
    )
    return link_code_id(relay_code) + mac.digest()


def link_proof_ok(
    proof: bytes, secret: bytes, account: str, device_id: int, identity_key: bytes
) -> bool:
    """Whether ``proof`` (with its code id already matched) binds ``identity_key`` of
    ``account``.``device_id`` under ``secret``. Compared in constant time."""
    if len(proof) != LINK_PROOF_LEN:
        return False
    try:
        subject = _subject(PROOF_MAGIC, account, device_id, identity_key)
    except CertificateError:
        return False
    mac = hmac.new(_proof_key(secret), subject, "sha256").digest()
    return hmac.compare_digest(mac, proof[LINK_CODE_ID_LEN:])
