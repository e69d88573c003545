"""Sealed sender v1 and sender certificates (tidings.e2e.sealed, .certificates) against
libsignal's own bytes.

tests/vectors/signal/libsignal-sealed.json was made by libsignal (@signalapp/libsignal-client
0.103.0, tests/vectors/libsignal/sealed.mjs): it opened *our* sealed message (pinned here as
golden bytes) and validated our certificates against our trust root, and it sealed a message
of its own to our recipient key, which we open here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.libsignal_fixture import (
    EXPIRES_MS,
    GROUP_ID,
    RECIPIENT,
    SENDER,
    SERVER_KEY,
    TRUST_ROOT,
    identity,
    ours_sealed,
    seeded_rng,
)
from tidings.e2e.certificates import CertificateError, SenderCertificate, ServerCertificate
from tidings.e2e.keys import PublicKey
from tidings.e2e.sealed import TYPE_MESSAGE, SealedContent, open_sealed, seal
from tidings.e2e.sealed_v2 import HEADER_LEN, SEALED_V2, open_sealed_v2, received, seal_multi
from tidings.errors import DecryptionError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signal" / "libsignal-sealed.json").read_text()
)
THEIRS = VECTORS["libsignal"]


def key(text: str) -> PublicKey:
    return PublicKey.parse(bytes.fromhex(text))


def test_our_bytes_are_the_ones_libsignal_opened_and_validated() -> None:
    ours = VECTORS["ours"]
    assert ours["libsignal_opened"] is True and ours["libsignal_validated"] is True
    pinned = {k: v for k, v in ours.items() if not k.startswith("libsignal_")}
    assert ours["libsignal_opened_v2"] is True
    assert ours_sealed() == pinned


def test_we_open_libsignals_sealed_message_and_validate_its_certificates() -> None:
    content = open_sealed(bytes.fromhex(THEIRS["sealed"]), RECIPIENT)
    assert content.msg_type == THEIRS["msg_type"] == 7  # a SenderKeyMessage inside
    assert content.content.hex() == THEIRS["content"]
    assert content.content_hint == THEIRS["content_hint"]
    assert content.group_id is not None and content.group_id.hex() == THEIRS["group_id"]
    cert = content.sender
    assert (cert.account, cert.device) == ("alice", 1)
    assert cert.identity_key == key(THEIRS["sender_identity_public"])
    assert cert.expires_ms == THEIRS["expires_ms"]
    assert cert.signer.key_id == 7 and cert.signer.key == key(THEIRS["server_key_public"])
    assert cert.serialize().hex() == THEIRS["certificate"]  # we read and write its bytes
    root = key(THEIRS["trust_root_public"])
    cert.validate(root, THEIRS["expires_ms"] - 1)
    with pytest.raises(CertificateError, match="expired"):
        cert.validate(root, THEIRS["expires_ms"] + 1)
    with pytest.raises(CertificateError, match="trust root"):
        cert.validate(TRUST_ROOT.public, THEIRS["expires_ms"] - 1)
    with pytest.raises(DecryptionError):  # sealed to bob.1, not to carol
        open_sealed(bytes.fromhex(THEIRS["sealed"]), SENDER)


def cert_for(who: Any, account: str = "carol", device: int = 2) -> SenderCertificate:
    server = ServerCertificate.issue(3, SERVER_KEY.public, TRUST_ROOT)
    return SenderCertificate.issue(account, device, who.public, EXPIRES_MS, server, SERVER_KEY)


def test_any_changed_byte_of_a_sealed_message_fails_and_the_sender_is_only_inside() -> None:
    content = SealedContent(TYPE_MESSAGE, cert_for(SENDER), b"hello bob", group_id=GROUP_ID)
    sealed = seal(content, SENDER, RECIPIENT.public, seeded_rng(b"t"))
    assert open_sealed(sealed, RECIPIENT) == content
    assert SENDER.public.raw not in sealed and b"carol" not in sealed  # the relay sees neither
    for i in range(0, len(sealed), 7):
        broken = bytearray(sealed)
        broken[i] ^= 0x40
        with pytest.raises(DecryptionError):
            open_sealed(bytes(broken), RECIPIENT)
    for bad in (b"", b"\x11", b"\x22" + sealed[1:], sealed[:-1]):
        with pytest.raises(DecryptionError):
            open_sealed(bad, RECIPIENT)


def test_a_certificate_of_someone_else_inside_is_refused() -> None:
    mallory = identity(b"mallory")
    # mallory seals with her own key but puts carol's certificate inside
    forged = SealedContent(TYPE_MESSAGE, cert_for(SENDER), b"it is me, carol")
    with pytest.raises(DecryptionError):
        open_sealed(seal(forged, mallory, RECIPIENT.public, seeded_rng(b"m")), RECIPIENT)
    # her own certificate opens — and names her
    honest = SealedContent(TYPE_MESSAGE, cert_for(mallory, "mallory", 1), b"hi")
    assert open_sealed(seal(honest, mallory, RECIPIENT.public, seeded_rng(b"m")), RECIPIENT)
    # a certificate the server key did not sign fails validation
    server = ServerCertificate.issue(3, SERVER_KEY.public, TRUST_ROOT)
    self_signed = SenderCertificate.issue("carol", 2, mallory.public, EXPIRES_MS, server, mallory)
    with pytest.raises(CertificateError, match="server key"):
        self_signed.validate(TRUST_ROOT.public, EXPIRES_MS - 1)
    for bad in (b"", b"\x0a\x03abc", cert_for(SENDER).serialize()[:-3]):
        with pytest.raises(CertificateError):
            SenderCertificate.parse(bad)


def test_libsignal_opened_our_multi_recipient_message() -> None:
    ours = VECTORS["ours"]
    assert ours["libsignal_opened_v2"] is True and len(ours["v2_received"]) == 2
    shared = ours["v2_shared"]
    for one in ours["v2_received"]:  # 0x22 || C_i || AT_i || the shared part
        message = bytes.fromhex(one["message"])
        assert message[0] == SEALED_V2 and message[1 + HEADER_LEN :].hex() == shared


def test_one_payload_for_many_devices_each_opens_only_its_own() -> None:
    bob, dave = identity(b"bob.1"), identity(b"dave.1")
    content = SealedContent(TYPE_MESSAGE, cert_for(SENDER), b"to the group", group_id=GROUP_ID)
    shared, headers = seal_multi(content, SENDER, [bob.public, dave.public], seeded_rng(b"v2"))
    assert len(headers) == 2 and all(len(h) == HEADER_LEN for h in headers)
    assert open_sealed_v2(received(headers[0], shared), bob) == content
    assert open_sealed_v2(received(headers[1], shared), dave) == content
    assert SENDER.public.raw not in shared and b"carol" not in shared
    with pytest.raises(DecryptionError):  # dave's header does not open for bob
        open_sealed_v2(received(headers[1], shared), bob)
    message = received(headers[0], shared)
    for i in range(0, len(message), 5):
        broken = bytearray(message)
        broken[i] ^= 0x01
        with pytest.raises(DecryptionError):
            open_sealed_v2(bytes(broken), bob)
    with pytest.raises(DecryptionError):
        open_sealed_v2(message[:80], bob)
    # mallory seals with her own key but puts carol's certificate inside: the tag fails
    forged_shared, forged = seal_multi(
        content, identity(b"mallory"), [bob.public], seeded_rng(b"f")
    )
    with pytest.raises(DecryptionError):
        open_sealed_v2(received(forged[0], forged_shared), bob)
    with pytest.raises(ValueError):
        received(headers[0][:-1], shared)
    # two devices of one account share its identity key, and so one header
    _, three = seal_multi(content, SENDER, [bob.public, bob.public, dave.public], seeded_rng(b"3"))
    assert three[0] == three[1] != three[2]
