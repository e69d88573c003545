"""VAPID: the relay identifies itself to push services (RFC 8292).

Each wake-up request carries ``Authorization: vapid t=JWT, k=KEY``: ``KEY`` is the relay's
P-256 public key (65 bytes uncompressed, base64url), and ``JWT`` a JSON Web Token signed with
it (ES256: ECDSA P-256 / SHA-256, the signature as ``r || s``, 64 bytes) whose claims are the
push service's origin (``aud``), an expiry at most :data:`MAX_LIFETIME` ahead (``exp``) and a
contact for the operator (``sub``, ``mailto:`` or ``https:``). A push service that knows the key
(the subscription was made with it) accepts the request; anyone else's key is refused.

Sans-I/O: ``now`` is passed in; ECDSA's nonce is the one place randomness is drawn by
``cryptography`` itself (as ML-KEM encapsulation in the e2e layer), so tokens are checked by
verifying, not by golden bytes.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .webpush import public_bytes

__all__ = ["MAX_LIFETIME", "TOKEN_LIFETIME", "VapidError", "authorization", "b64url", "verify"]

#: RFC 8292 §2: a token expires no more than 24 hours after it was made.
MAX_LIFETIME = 24 * 3600
#: The relay's tokens live 12 hours (reused for many wake-ups; well inside the maximum).
TOKEN_LIFETIME = 12 * 3600


class VapidError(ValueError):
    """A VAPID token or header that is not valid."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise VapidError("not base64url") from None


def audience(endpoint: str) -> str:
    """The ``aud`` claim for a push endpoint: its origin."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def authorization(
    key: ec.EllipticCurvePrivateKey,
    endpoint: str,
    subject: str,
    now: float,
    lifetime: int = TOKEN_LIFETIME,
) -> str:
    """The ``Authorization`` header value for a request to ``endpoint``."""
    if not 0 < lifetime <= MAX_LIFETIME:
        raise VapidError(f"a VAPID token lives at most {MAX_LIFETIME} s")
    if not subject.startswith(("mailto:", "https:")):
        raise VapidError("the VAPID contact is a mailto: or https: URL")
    header = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode())
    claims = {"aud": audience(endpoint), "exp": int(now) + lifetime, "sub": subject}
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return f"vapid t={header}.{body}.{signature}, k={b64url(public_bytes(key))}"


def verify(value: str, endpoint: str, now: float) -> dict[str, object]:
    """The claims of a ``vapid`` header value, checked as a push service checks them (the
    signature by the key in ``k``, the audience, the expiry).

    Raises:
        VapidError: anything not valid.
    """
    if not value.startswith("vapid "):
        raise VapidError("not a vapid authorization")
    fields = dict(p.strip().split("=", 1) for p in value[6:].split(",") if "=" in p)
    token, key_text = fields.get("t", ""), fields.get("k", "")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(key_text))
    except ValueError:
        raise VapidError("k is not a P-256 public key") from None
    parts = token.split(".")
    if len(parts) != 3:
        raise VapidError("t is not a JWT")
    raw = _unb64url(parts[2])
    if len(raw) != 64:
        raise VapidError("an ES256 signature is 64 bytes")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("the token's signature does not verify") from None
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except ValueError:
        raise VapidError("the token is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise VapidError("the token is not ES256")
    if not isinstance(claims, dict) or claims.get("aud") != audience(endpoint):
        raise VapidError("the token is for another push service")
    exp = claims.get("exp")
    if not isinstance(exp, int) or not now < exp <= now + MAX_LIFETIME:
        raise VapidError("the token expired, or lives longer than 24 hours")
    return claims
