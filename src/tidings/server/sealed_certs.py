"""The relay's sender certificates for sealed sender (docs/protocol.md §14), sans-I/O.

Trust chain: the **trust root** is the relay's Noise static key — the key every client
already pins (§3.5) — so sealed sender needs no new pin. At start the relay signs (XEdDSA with
that X25519 key, :func:`tidings.e2e.xeddsa.sign`) a **server certificate** for its
**certificate key** (an identity key pair kept in ``sender-cert.key``, mode 0600, as
``server.key``), and with the certificate key it signs each device's **sender certificate**:
account, device, the identity key the device uploaded (PREKEYS_UPLOAD), and an expiry
:data:`SENDER_CERT_LIFETIME` from now. A recipient checks it with
:meth:`tidings.e2e.certificates.SenderCertificate.validate` against the relay's static key.

The server certificate's id is the first 4 bytes (big-endian) of SHA-256 of the certificate
key's public key: stable for one key, new with a new one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..e2e.certificates import SenderCertificate, ServerCertificate
from ..e2e.keys import IdentityKeyPair, PublicKey, Rng
from ..e2e.xeddsa import XEdDSAKey
from ..store import DeviceRef

__all__ = ["SENDER_CERT_LIFETIME", "CertIssuer", "identity_public_key"]

#: Seconds a sender certificate is valid. Signal's are valid for about a day; a stolen or
#: outdated certificate (a device unlinked, an identity key reset) is then good for at most a
#: day, and a device online once a day never runs out.
SENDER_CERT_LIFETIME = 24 * 3600.0


def identity_public_key(stored: bytes) -> PublicKey:
    """An uploaded identity key (32 bytes bare, or 33 with libsignal's ``0x05``) as a key.

    Raises:
        ValueError: neither form.
    """
    if len(stored) == 33:
        return PublicKey.parse(stored)
    return PublicKey(stored)


@dataclass(frozen=True, slots=True)
class CertIssuer:
    """Issues sender certificates (see the module docstring).

    Attributes:
        server_certificate: the certificate key's certificate, signed by the trust root.
        key: the certificate key.
        lifetime: seconds each sender certificate is valid.
    """

    server_certificate: ServerCertificate
    key: IdentityKeyPair
    lifetime: float = SENDER_CERT_LIFETIME

    @classmethod
    def create(
        cls,
        static_private: bytes,
        certificate_seed: bytes,
        rng: Rng,
        lifetime: float = SENDER_CERT_LIFETIME,
    ) -> CertIssuer:
        """The issuer of a relay whose Noise static private key is ``static_private`` and
        whose certificate key is the identity key of seed ``certificate_seed`` (32 bytes)."""
        key = IdentityKeyPair(certificate_seed)
        key_id = int.from_bytes(hashlib.sha256(key.public.serialize()).digest()[:4], "big")
        root = XEdDSAKey(static_private, rng)
        return cls(ServerCertificate.issue(key_id, key.public, root), key, lifetime)

    def issue(self, device: DeviceRef, identity_key: bytes, now: float) -> tuple[bytes, float]:
        """A serialized sender certificate for ``device`` and when it expires (seconds).

        Raises:
            ValueError: ``identity_key`` is not an identity key.
        """
        expires_at = now + self.lifetime
        certificate = SenderCertificate.issue(
            device.account,
            device.device_id,
            identity_public_key(identity_key),
            int(expires_at * 1000),
            self.server_certificate,
            self.key,
        )
        return certificate.serialize(), expires_at
