"""Device certificates and link proofs (tidings.e2e.certificate, docs/protocol.md §6.31): the
byte layouts pinned by golden bytes (computed once and frozen: a difference is a format
change), verification, and refusal of anything else."""

from __future__ import annotations

import pytest

from tidings.e2e import IdentityKeyPair
from tidings.e2e.certificate import (
    MAX_CERTIFICATE,
    CertificateError,
    DeviceCertificate,
    link_code_id,
    link_proof,
    link_proof_ok,
)
from tidings.wire import MAX_DEVICE_CERTIFICATE

SIGNER = IdentityKeyPair(bytes(range(32)))  # device 1
SUBJECT = IdentityKeyPair(bytes(range(32, 64)))  # device 2
CODE = bytes(range(16))
SECRET = bytes(range(16, 32))

GOLDEN_CERT = bytes.fromhex(
    "746964696e67732d6465766963652d636572742d763100"  # "tidings-device-cert-v1\0"
    "05616c696365"  # u8 len, "alice"
    "0000000000000002"  # device 2
    "5730800ab340fcb18ce5111eda9d705f91388b41e4544cbd103ba5942db2233e"  # its identity key
    "0000000000000001"  # issuer: device 1
    "000000006553f100"  # issued at 1,700,000,000
    "e23c414d75a5a8c469cc5613d6b7b7734f3230b7df216b61a9269ad286bcbdfa"  # XEdDSA signature
    "53553db600130701e897514493771cdecc2b57e9354ee49f952af76f8901c68e"
)
GOLDEN_PROOF = bytes.fromhex(
    "be45cb2605bf36be"  # code id: SHA-256(code)[:8]
    "8dea1c823d082416df836a62c0f37f17fe9903e996c3b9da9c84990c61d3d27a"  # HMAC-SHA256
)


def cert() -> DeviceCertificate:
    return DeviceCertificate.issue(SIGNER, "alice", 1, 2, SUBJECT.public.raw, 1_700_000_000)


def test_the_certificate_bytes_are_pinned() -> None:
    assert cert().serialize() == GOLDEN_CERT
    assert DeviceCertificate.parse(GOLDEN_CERT) == cert()
    assert cert().verify(SIGNER.public.raw)
    assert not cert().verify(SUBJECT.public.raw)  # only the issuer's key
    assert MAX_CERTIFICATE <= MAX_DEVICE_CERTIFICATE  # the relay stores the longest


def test_the_link_proof_bytes_are_pinned() -> None:
    proof = link_proof(CODE, SECRET, "alice", 2, SUBJECT.public.raw)
    assert proof == GOLDEN_PROOF
    assert proof[:8] == link_code_id(CODE)
    assert link_proof_ok(proof, SECRET, "alice", 2, SUBJECT.public.raw)


@pytest.mark.parametrize(
    ("secret", "account", "device_id", "key"),
    [
        (bytes(16), "alice", 2, SUBJECT.public.raw),  # another secret
        (SECRET, "bob", 2, SUBJECT.public.raw),  # another account
        (SECRET, "alice", 3, SUBJECT.public.raw),  # another device
        (SECRET, "alice", 2, SIGNER.public.raw),  # another identity key
    ],
)
def test_a_proof_binds_the_secret_the_device_and_its_key(
    secret: bytes, account: str, device_id: int, key: bytes
) -> None:
    assert not link_proof_ok(GOLDEN_PROOF, secret, account, device_id, key)


def test_every_signed_field_counts() -> None:
    good = bytearray(GOLDEN_CERT)
    for i in range(len(GOLDEN_CERT)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        try:
            parsed = DeviceCertificate.parse(bytes(bad))
        except CertificateError:
            continue
        assert not parsed.verify(SIGNER.public.raw), i


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GOLDEN_CERT[:-1],
        GOLDEN_CERT + b"\x00",
        b"x" + GOLDEN_CERT[1:],
        bytes(300),
        GOLDEN_CERT[:22] + b"\x01" + GOLDEN_CERT[23:],  # the magic's terminator
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(CertificateError):
        DeviceCertificate.parse(data)


def test_an_invalid_certificate_cannot_be_built() -> None:
    key = SUBJECT.public.raw
    for args in (
        ("alice", 2, key, 2, 0, bytes(64)),  # a device vouching for itself
        ("", 2, key, 1, 0, bytes(64)),
        ("alice", 0, key, 1, 0, bytes(64)),
        ("alice", 2, key[:31], 1, 0, bytes(64)),
        ("alice", 2, key, 1, -1, bytes(64)),
        ("alice", 2, key, 1, 0, bytes(63)),
    ):
        with pytest.raises(CertificateError):
            DeviceCertificate(*args)
