"""Sealed sender, version 2: one sealed payload for many recipient devices.

A group message to N devices is sealed once: the content is encrypted once with a key derived
from 32 random bytes ``M``, and each recipient gets only a 48-byte header that gives it ``M``
(libsignal's multi-recipient sealed sender, after Barbosa's "Randomness Reuse")::

    r = HKDF-SHA256(salt = none, ikm = M, info = "Sealed Sender v2: r (2023-08)", 32)
    K = HKDF-SHA256(salt = none, ikm = M, info = "Sealed Sender v2: K", 32)
    E = the X25519 key pair of private key r;  S = the sender's identity;  R_i = recipient i's
    C_i  = HKDF(ikm = X25519(E, R_i) || E || R_i, info = "Sealed Sender v2: DH", 32) xor M
    AT_i = HKDF(ikm = X25519(S, R_i) || E || C_i || S || R_i,
                info = "Sealed Sender v2: DH-sender", 16)
    shared = E (32 bytes, no type byte) || AES-256-GCM-SIV(K, nonce = 0, content) (tag at the end)

(keys in HKDF inputs are their 33-byte forms.) What recipient i receives is libsignal's
*received message*: ``0x22 || C_i || AT_i || shared``. The relay can store ``shared`` once and
48 bytes per device. The recipient recomputes ``M``, checks that it derives ``E`` (so ``C_i``
was made for it), decrypts, and checks ``AT_i`` against the sender identity named inside: only
the holder of ``S`` could have made it.

Sans-I/O: ``M`` comes from the injected ``rng``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import DecryptionError
from .keys import IdentityKeyPair, KeyPair, PublicKey
from .sealed import SealedContent

__all__ = ["HEADER_LEN", "SEALED_V2", "open_sealed_v2", "received", "seal_multi"]

#: The version byte of a sealed-sender v2 received message: ``(2 << 4) | 2``.
SEALED_V2 = 0x22
#: What each recipient device adds to the shared part: ``C_i`` (32) and ``AT_i`` (16).
HEADER_LEN = 48
_LABEL_R = b"Sealed Sender v2: r (2023-08)"
_LABEL_K = b"Sealed Sender v2: K"
_LABEL_DH = b"Sealed Sender v2: DH"
_LABEL_DH_S = b"Sealed Sender v2: DH-sender"
_NONCE = bytes(12)

Rng = Callable[[int], bytes]


def _kdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def _derived(m: bytes) -> tuple[KeyPair, bytes]:
    return KeyPair.from_private(_kdf(m, _LABEL_R, 32)), _kdf(m, _LABEL_K, 32)


def _mask(agreement: bytes, e: PublicKey, r: PublicKey) -> bytes:
    return _kdf(agreement + e.serialize() + r.serialize(), _LABEL_DH, 32)


def _tag(agreement: bytes, e: PublicKey, c: bytes, s: PublicKey, r: PublicKey) -> bytes:
    return _kdf(agreement + e.serialize() + c + s.serialize() + r.serialize(), _LABEL_DH_S, 16)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def seal_multi(
    content: SealedContent,
    sender: IdentityKeyPair,
    recipients: Sequence[PublicKey],
    rng: Rng,
) -> tuple[bytes, list[bytes]]:
    """``content`` sealed once for every recipient identity key: the shared part, and each
    recipient's :data:`HEADER_LEN`-byte header, in order (devices of one account share an
    identity key, and so a header)."""
    m = rng(32)
    if len(m) != 32:
        raise ValueError("rng(32) must return 32 bytes")
    e, k = _derived(m)
    shared = e.public.raw + AESGCMSIV(k).encrypt(_NONCE, content.serialize(), None)
    s = sender.dh_key_pair
    headers = []
    made: dict[bytes, bytes] = {}  # the devices of one account share an identity key
    for r in recipients:
        header = made.get(r.raw)
        if header is None:
            c = _xor(_mask(e.dh(r), e.public, r), m)
            header = made[r.raw] = c + _tag(s.dh(r), e.public, c, s.public, r)
        headers.append(header)
    return shared, headers


def received(header: bytes, shared: bytes) -> bytes:
    """What one recipient device is given: libsignal's v2 received message."""
    if len(header) != HEADER_LEN:
        raise ValueError(f"a recipient's header is {HEADER_LEN} bytes")
    return bytes([SEALED_V2]) + header + shared


def open_sealed_v2(data: bytes, recipient: IdentityKeyPair) -> SealedContent:
    """The content of a v2 received message to ``recipient``; the certificate's signatures
    and expiry are the caller's to check, as for v1.

    Raises:
        DecryptionError: not for us, tampered, or not made by the identity named inside.
    """
    if len(data) < 1 + HEADER_LEN + 32 + 16 or data[0] != SEALED_V2:
        raise DecryptionError()
    c, at = data[1:33], data[33:49]
    e_public, ciphertext = PublicKey(data[49:81]), data[81:]
    ours = recipient.dh_key_pair
    try:
        m = _xor(_mask(ours.dh(e_public), e_public, ours.public), c)
        e, k = _derived(m)
        if not hmac.compare_digest(e.public.raw, e_public.raw):
            raise DecryptionError()  # C was not made for our key
        content = SealedContent.parse(AESGCMSIV(k).decrypt(_NONCE, ciphertext, None))
        s = content.sender.identity_key
        expected = _tag(ours.dh(s), e_public, c, s, ours.public)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
    if not hmac.compare_digest(expected, at):
        raise DecryptionError()  # not sealed by the identity its certificate names
    return content
