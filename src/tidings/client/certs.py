"""Device certificates on the client (docs/protocol.md §6.31): link secrets, link proofs,
signing a certificate for a new own device, and checking the certificates of any account.

The three roles:

* **issuer** (``tidings link``): :func:`issue_link_code` draws the link secret, keeps it, and
  returns the code to show (the relay's half and the secret);
* **new device** (``tidings register --link-code``): :func:`save_link_proof` keeps the proof
  that binds its identity key to the secret (it goes out with its DEVICE_INFO);
* **issuer again**, when the DEVICE_INFO arrives: :func:`answer_link_proof` checks the proof
  against the key of the session it came in and signs a certificate, or flags the device;
* **anyone** listing an account's devices: :func:`check_certificate` against the identity keys
  this device pinned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..e2e import IdentityKeyPair
from ..e2e.certificate import (
    LINK_CODE_ID_LEN,
    LINK_SECRET_LEN,
    CertificateError,
    DeviceCertificate,
    link_code_id,
    link_proof,
    link_proof_ok,
)
from ..refs import DeviceRef
from .store import ClientStore, DeviceMark

__all__ = [
    "CERTIFIED",
    "INVALID",
    "UNCERTIFIED",
    "UNCHECKED",
    "answer_link_proof",
    "check_certificate",
    "issue_link_code",
    "save_link_proof",
    "split_link_code",
]

CERTIFIED = "certified"
UNCERTIFIED = "uncertified"
UNCHECKED = "unchecked"
INVALID = "invalid"

#: Bytes of the relay's half of a link code (LINK_CODE: the relay draws 16).
RELAY_CODE_LEN = 16


def issue_link_code(store: ClientStore, relay_code: bytes, expires_at: float) -> bytes:
    """Draw a link secret for ``relay_code``, keep it until ``expires_at``, and return the
    code to show: the relay's half, then the secret."""
    secret = os.urandom(LINK_SECRET_LEN)
    store.put_link_secret(link_code_id(relay_code), secret, expires_at)
    return relay_code + secret


def split_link_code(code: bytes) -> tuple[bytes, bytes | None]:
    """The relay's half of a code a user typed, and its secret (``None``: an old code, from a
    client before certificates — the device will be linked, uncertified)."""
    if len(code) == RELAY_CODE_LEN + LINK_SECRET_LEN:
        return code[:RELAY_CODE_LEN], code[RELAY_CODE_LEN:]
    return code, None


def save_link_proof(store: ClientStore, code: bytes, account: str, device_id: int) -> None:
    """On a device just linked with ``code`` (and given its identity key): keep its link proof
    if the code had a secret."""
    relay_code, secret = split_link_code(code)
    e2e = store.e2e_identity()
    if secret is None or e2e is None:
        return
    key = IdentityKeyPair(e2e.identity_seed).public.raw
    store.set_link_proof(link_proof(relay_code, secret, account, device_id, key))


def answer_link_proof(
    store: ClientStore,
    me: DeviceRef,
    signer: IdentityKeyPair,
    sender: DeviceRef,
    sender_key: bytes | None,
    proof: bytes,
    now: float,
) -> DeviceMark | None:
    """A DEVICE_INFO of own device ``sender`` (whose session identity key is ``sender_key``)
    carried ``proof``. If the proof answers a code this device issued, sign a certificate (kept
    for the relay) or flag the device, and return the mark; ``None``: not this device's code."""
    secret = store.link_secret(proof[:LINK_CODE_ID_LEN], now)
    if secret is None:
        return None  # another device's code (or an expired one): not ours to judge
    if sender_key is not None and link_proof_ok(
        proof, secret, sender.account, sender.device_id, sender_key
    ):
        cert = DeviceCertificate.issue(
            signer, me.account, me.device_id, sender.device_id, sender_key, int(now)
        )
        mark = DeviceMark(
            sender.account, sender.device_id, CERTIFIED, me.device_id, "", sender_key, now
        )
        store.certify(mark, cert.serialize(), proof[:LINK_CODE_ID_LEN])
        return mark
    reason = "its link proof does not verify: it was not given this link code's secret"
    mark = DeviceMark(sender.account, sender.device_id, INVALID, None, reason, sender_key, now)
    store.set_device_mark(mark)
    return mark


def check_certificate(
    device: DeviceRef, certificate: bytes, known: Mapping[int, bytes], now: float
) -> DeviceMark:
    """What ``certificate`` (from the relay; empty: none) says of ``device``, given the raw
    identity keys this device holds for the account's devices (``known``, by device id)."""
    key = known.get(device.device_id)

    def mark(status: str, reason: str = "", issuer: int | None = None) -> DeviceMark:
        return DeviceMark(device.account, device.device_id, status, issuer, reason, key, now)

    if not certificate:
        return mark(UNCERTIFIED)
    try:
        cert = DeviceCertificate.parse(certificate)
    except CertificateError as exc:
        return mark(INVALID, f"not a device certificate ({exc.reason})")
    if (cert.account, cert.device_id) != (device.account, device.device_id):
        return mark(INVALID, f"the certificate is for {cert.account}.{cert.device_id}")
    if key is None:
        return mark(UNCHECKED, "its key is not known here yet (no session with it)")
    if cert.identity_key != key:
        return mark(INVALID, "the certificate is for another identity key")
    issuer_key = known.get(cert.issuer)
    if issuer_key is None:
        return mark(UNCHECKED, f"signed by device {cert.issuer}, whose key is not known here")
    if not cert.verify(issuer_key):
        return mark(INVALID, f"the signature does not verify with device {cert.issuer}'s key")
    return mark(CERTIFIED, issuer=cert.issuer)
