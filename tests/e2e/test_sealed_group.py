"""The tidings sealed group payload (tidings.e2e.sealed_group, docs/protocol.md §14.3): a
group message and its message id inside one v2 sealed message for many devices."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.libsignal_fixture import (
    EXPIRES_MS,
    RECIPIENT,
    SENDER,
    SERVER_KEY,
    TRUST_ROOT,
    identity,
    seeded_rng,
)
from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.e2e.sealed import TYPE_SENDERKEY_MESSAGE
from tidings.e2e.sealed_group import open_group_payload, seal_group
from tidings.e2e.sealed_payload import SealedCertificateRefused
from tidings.e2e.sealed_v2 import open_sealed_v2
from tidings.errors import DecryptionError

MESSAGE_ID = bytes(range(16))
ENVELOPE = b"\x47\x01" + b"GROUP_MESSAGE content bytes"
SERVER = ServerCertificate.issue(3, SERVER_KEY.public, TRUST_ROOT)
CERT = SenderCertificate.issue("carol", 2, SENDER.public, EXPIRES_MS, SERVER, SERVER_KEY)
NOW_MS = EXPIRES_MS - 1
OTHER = identity(b"another member")


def sealed() -> tuple[bytes, list[bytes]]:
    recipients = [RECIPIENT.public, OTHER.public, RECIPIENT.public]
    return seal_group(MESSAGE_ID, ENVELOPE, CERT, SENDER, recipients, seeded_rng(b"g"))


def test_golden_bytes() -> None:
    # pinned: a change of the layout (the type, id before the envelope) changes these
    shared, parts = sealed()
    assert [len(p) for p in parts] == [49, 49, 49] and all(p[0] == 0x22 for p in parts)
    assert parts[0] == parts[2] != parts[1]  # one identity key, one header
    digest = hashlib.sha256(shared + b"".join(parts)).hexdigest()
    assert digest == GOLDEN


def test_each_device_opens_part_then_shared_to_the_certified_sender() -> None:
    shared, parts = sealed()
    for key, part in ((RECIPIENT, parts[0]), (OTHER, parts[1])):
        opened = open_group_payload(part + shared, key, TRUST_ROOT.public, NOW_MS)
        assert (opened.account, opened.device) == ("carol", 2)
        assert opened.identity_key.raw == SENDER.public.raw
        assert (opened.message_id, opened.envelope) == (MESSAGE_ID, ENVELOPE)
    # inside, as libsignal reads it: type 7 (sender-key message), the id then the envelope
    content = open_sealed_v2(parts[0] + shared, RECIPIENT)
    assert content.msg_type == TYPE_SENDERKEY_MESSAGE
    assert content.content == MESSAGE_ID + ENVELOPE


def test_an_expired_or_foreign_certificate_is_refused() -> None:
    shared, parts = sealed()
    with pytest.raises(SealedCertificateRefused, match="expired"):
        open_group_payload(parts[0] + shared, RECIPIENT, TRUST_ROOT.public, EXPIRES_MS + 1)
    with pytest.raises(SealedCertificateRefused, match="trust root"):
        open_group_payload(parts[0] + shared, RECIPIENT, identity(b"x").public, NOW_MS)


def test_another_devices_part_or_a_tampered_body_does_not_open() -> None:
    shared, parts = sealed()
    with pytest.raises(DecryptionError):
        open_group_payload(parts[1] + shared, RECIPIENT, TRUST_ROOT.public, NOW_MS)
    bad = shared[:-1] + bytes([shared[-1] ^ 1])
    with pytest.raises(DecryptionError):
        open_group_payload(parts[0] + bad, RECIPIENT, TRUST_ROOT.public, NOW_MS)


def test_only_group_envelopes_and_whole_ids_are_sealed() -> None:
    with pytest.raises(ValueError, match="group envelope"):
        seal_group(MESSAGE_ID, b"\x01x", CERT, SENDER, [RECIPIENT.public], seeded_rng(b"g"))
    with pytest.raises(ValueError, match="16 bytes"):
        seal_group(b"short", ENVELOPE, CERT, SENDER, [RECIPIENT.public], seeded_rng(b"g"))
    with pytest.raises(ValueError, match="identity key"):
        seal_group(MESSAGE_ID, ENVELOPE, CERT, RECIPIENT, [SENDER.public], seeded_rng(b"g"))


GOLDEN = "c1dfb52ca3adfabc17786484ccd9dc7f0f6c3e9c3e1984adf08751f6af671e9a"
