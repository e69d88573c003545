"""The tidings sealed payload (tidings.e2e.sealed_payload, docs/protocol.md §14.2): a SEND
payload and its message id inside a v1 sealed message, the certificate checked on opening."""

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
from tidings.e2e.sealed import TYPE_PREKEY_MESSAGE, SealedContent, open_sealed, seal
from tidings.e2e.sealed_payload import SealedCertificateRefused, open_payload, seal_payload
from tidings.errors import DecryptionError

MESSAGE_ID = bytes(range(16))
ENVELOPE = b"\x01" + b"whisper message bytes"
SERVER = ServerCertificate.issue(3, SERVER_KEY.public, TRUST_ROOT)
CERT = SenderCertificate.issue("carol", 2, SENDER.public, EXPIRES_MS, SERVER, SERVER_KEY)
NOW_MS = EXPIRES_MS - 1


def sealed() -> bytes:
    return seal_payload(MESSAGE_ID, ENVELOPE, CERT, SENDER, RECIPIENT.public, seeded_rng(b"p"))


def test_golden_bytes() -> None:
    # pinned: a change of the layout (id before the envelope, the type mapping) changes these
    data = sealed()
    assert data[0] == 0x11
    assert hashlib.sha256(data).hexdigest() == GOLDEN


def test_it_opens_to_the_certified_sender_the_message_id_and_the_envelope() -> None:
    opened = open_payload(sealed(), RECIPIENT, TRUST_ROOT.public, NOW_MS)
    assert (opened.account, opened.device) == ("carol", 2)
    assert opened.identity_key.raw == SENDER.public.raw
    assert (opened.message_id, opened.envelope) == (MESSAGE_ID, ENVELOPE)
    # inside, as libsignal would read it: type 2 (message), the id then the envelope
    content = open_sealed(sealed(), RECIPIENT)
    assert content.msg_type == 2 and content.content == MESSAGE_ID + ENVELOPE


def test_an_expired_or_foreign_certificate_is_refused() -> None:
    with pytest.raises(SealedCertificateRefused, match="expired"):
        open_payload(sealed(), RECIPIENT, TRUST_ROOT.public, EXPIRES_MS + 1)
    with pytest.raises(SealedCertificateRefused, match="trust root"):
        open_payload(sealed(), RECIPIENT, identity(b"another relay").public, NOW_MS)


def test_another_device_cannot_open_it() -> None:
    with pytest.raises(DecryptionError):
        open_payload(sealed(), identity(b"eve.1"), TRUST_ROOT.public, NOW_MS)


def test_a_type_that_does_not_match_the_envelope_or_a_short_content_is_refused() -> None:
    for msg_type, inner in ((TYPE_PREKEY_MESSAGE, MESSAGE_ID + ENVELOPE), (2, MESSAGE_ID)):
        data = seal(
            SealedContent(msg_type, CERT, inner), SENDER, RECIPIENT.public, seeded_rng(b"q")
        )
        with pytest.raises(DecryptionError):
            open_payload(data, RECIPIENT, TRUST_ROOT.public, NOW_MS)


def test_the_sender_refuses_what_it_cannot_seal_rightly() -> None:
    rng = seeded_rng(b"r")
    with pytest.raises(ValueError):
        seal_payload(MESSAGE_ID[:15], ENVELOPE, CERT, SENDER, RECIPIENT.public, rng)
    with pytest.raises(ValueError):
        seal_payload(MESSAGE_ID, b"\x07rest", CERT, SENDER, RECIPIENT.public, rng)
    with pytest.raises(ValueError):  # a certificate of another key
        seal_payload(MESSAGE_ID, ENVELOPE, CERT, identity(b"eve.1"), RECIPIENT.public, rng)


GOLDEN = "f3605d7e95256b772e8859e9f913841dc9fbcfcabdf3fc60e5338a5cbaae883d"
