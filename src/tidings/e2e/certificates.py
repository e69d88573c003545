"""Sender certificates for sealed sender, in libsignal's format.

The relay vouches for who a sealed message is from without seeing it: it gives each device a
short-lived **sender certificate** (account, device, identity key, expiry), signed by a
**server certificate** key, which is in turn signed by a **trust root** the clients pin. The
sender puts its certificate inside the sealed envelope (:mod:`.sealed`); only the recipient
reads it, and checks it with :meth:`SenderCertificate.validate`.

Formats (libsignal's ``sealed_sender.proto``; signatures are XEdDSA, §12.2 of protocol.md)::

    ServerCertificate { bytes certificate = 1;   # Certificate { uint32 id = 1; bytes key = 2; }
                        bytes signature = 2; }   # by the trust root over `certificate`
    SenderCertificate { bytes certificate = 1;   # Certificate { uint32 sender_device = 2;
                        bytes signature = 2; }   #   fixed64 expires = 3; bytes identity_key = 4;
                                                 #   ServerCertificate signer = 5;
                                                 #   string sender_uuid = 6; }
                                                 # signed by the server certificate's key

libsignal's ``sender_uuid`` carries our account name (libsignal takes any string there).
``expires`` is milliseconds since 1970, as Signal's. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from . import protobuf
from .keys import PublicKey
from .xeddsa import verify

__all__ = ["CertificateError", "SenderCertificate", "ServerCertificate", "Signer"]


class Signer(Protocol):
    """What signs a certificate: an :class:`~tidings.e2e.keys.IdentityKeyPair`, or the relay's
    X25519 static key (:class:`~tidings.e2e.xeddsa.XEdDSAKey`); both sign libsignal's way."""

    def sign(self, message: bytes) -> bytes:
        """libsignal's XEdDSA signature of ``message`` (see :mod:`.xeddsa`)."""
        ...


class CertificateError(ValueError):
    """A certificate that does not parse, is not signed by whom it must be, or expired."""


def _int(fields: protobuf.Fields, number: int) -> int:
    value = fields.get(number)
    if not isinstance(value, int):
        raise CertificateError(f"field {number} is missing or not a number")
    return value


def _bytes(fields: protobuf.Fields, number: int) -> bytes:
    value = fields.get(number)
    if not isinstance(value, bytes):
        raise CertificateError(f"field {number} is missing or not bytes")
    return value


def _key(data: bytes) -> PublicKey:
    try:
        return PublicKey.parse(data)
    except ValueError:
        raise CertificateError("not a public key") from None


def _decode(data: bytes) -> protobuf.Fields:
    try:
        return protobuf.decode(data, keep_fixed=True)
    except protobuf.ProtobufError as exc:
        raise CertificateError(f"not a certificate: {exc}") from None


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The key (and its id) that signs sender certificates, signed by the trust root."""

    key_id: int
    key: PublicKey
    certificate: bytes
    signature: bytes

    @classmethod
    def issue(cls, key_id: int, key: PublicKey, trust_root: Signer) -> ServerCertificate:
        body = protobuf.uint32_field(1, key_id) + protobuf.bytes_field(2, key.serialize())
        return cls(key_id, key, body, trust_root.sign(body))

    def serialize(self) -> bytes:
        return protobuf.bytes_field(1, self.certificate) + protobuf.bytes_field(2, self.signature)

    @classmethod
    def parse(cls, data: bytes) -> ServerCertificate:
        outer = _decode(data)
        certificate = _bytes(outer, 1)
        inner = _decode(certificate)
        return cls(
            _int(inner, 1),
            _key(_bytes(inner, 2)),
            certificate,
            _bytes(outer, 2),
        )

    def signed_by(self, trust_root: PublicKey) -> bool:
        return verify(trust_root, self.certificate, self.signature)


@dataclass(frozen=True, slots=True)
class SenderCertificate:
    """Who a sealed message is from, as the relay vouches: account, device, identity key,
    until when (ms since 1970)."""

    account: str
    device: int
    identity_key: PublicKey
    expires_ms: int
    signer: ServerCertificate
    certificate: bytes
    signature: bytes

    @classmethod
    def issue(
        cls,
        account: str,
        device: int,
        identity_key: PublicKey,
        expires_ms: int,
        signer: ServerCertificate,
        signer_key: Signer,
    ) -> SenderCertificate:
        body = b"".join(
            (
                protobuf.uint32_field(2, device),
                protobuf.fixed64_field(3, expires_ms),
                protobuf.bytes_field(4, identity_key.serialize()),
                protobuf.bytes_field(5, signer.serialize()),
                protobuf.bytes_field(6, account.encode()),
            )
        )
        return cls(account, device, identity_key, expires_ms, signer, body, signer_key.sign(body))

    def serialize(self) -> bytes:
        return protobuf.bytes_field(1, self.certificate) + protobuf.bytes_field(2, self.signature)

    @classmethod
    def parse(cls, data: bytes) -> SenderCertificate:
        """Raises :class:`CertificateError` if it does not parse (signatures: :meth:`validate`)."""
        outer = _decode(data)
        certificate = _bytes(outer, 1)
        inner = _decode(certificate)
        try:
            account = _bytes(inner, 6).decode()
        except UnicodeDecodeError:
            raise CertificateError("the sender is not UTF-8") from None
        return cls(
            account,
            _int(inner, 2),
            _key(_bytes(inner, 4)),
            _int(inner, 3),
            ServerCertificate.parse(_bytes(inner, 5)),
            certificate,
            _bytes(outer, 2),
        )

    def validate(self, trust_root: PublicKey, now_ms: int) -> None:
        """Raise :class:`CertificateError` unless the trust root signed the server certificate,
        its key signed this one, and it has not expired at ``now_ms``."""
        if not self.signer.signed_by(trust_root):
            raise CertificateError("the server certificate is not signed by the trust root")
        if not verify(self.signer.key, self.certificate, self.signature):
            raise CertificateError("the sender certificate is not signed by the server key")
        if now_ms > self.expires_ms:
            raise CertificateError("the sender certificate expired")
