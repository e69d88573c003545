"""Sealed sender at the relay's connection core, without sockets: SENDER_CERT_REQUEST,
SET_ACCESS_KEY, and what an unidentified (NK) session may send."""

from __future__ import annotations

import pytest

from tests.server.test_core import T0, Lab, Wire, run_now
from tests.server.test_prekeys import kem, signed
from tidings.e2e.certificates import CertificateError, SenderCertificate
from tidings.e2e.keys import PublicKey
from tidings.errors import StoreUnavailable
from tidings.noise import public_key
from tidings.server.core import RelayCore, State
from tidings.server.core_actions import PutAccessKey, ReadIdentityKey
from tidings.server.sealed_certs import SENDER_CERT_LIFETIME, CertIssuer
from tidings.store import DeviceRef
from tidings.wire import (
    ErrorCode,
    Ping,
    Pong,
    PrekeysUpload,
    RequestFailed,
    SenderCert,
    SenderCertRequest,
    SetAccessKey,
)

STATIC = bytes(range(1, 33))  #: the relay's Noise static private key in these tests
ISSUER = CertIssuer.create(STATIC, bytes(range(32, 64)), lambda n: bytes(n))
IDENTITY = b"\x05" + bytes(range(100, 132))
ALICE1 = DeviceRef("alice", 1)


def with_issuer(w: Wire) -> Wire:
    w.core.issuer = ISSUER
    return w


def uploaded(lab: Lab) -> Wire:
    w = with_issuer(lab.device("alice"))
    w.feed(PrekeysUpload(1, IDENTITY, signed(1), (), kem(1)))
    w.take()
    return w


def test_a_sender_certificate_names_the_device_and_its_uploaded_key() -> None:
    lab = Lab()
    w = uploaded(lab)
    w.feed(SenderCertRequest(7), now=T0 + 5)
    (answer,) = w.take()
    assert isinstance(answer, SenderCert) and answer.request_id == 7
    assert answer.expires_at == T0 + 5 + SENDER_CERT_LIFETIME
    cert = SenderCertificate.parse(answer.certificate)
    assert (cert.account, cert.device) == ("alice", 1)
    assert cert.identity_key == PublicKey.parse(IDENTITY)
    assert cert.expires_ms == int((T0 + 5 + 24 * 3600) * 1000)
    root = PublicKey(public_key(STATIC))  # the relay's pinned Noise key is the trust root
    cert.validate(root, int((T0 + 6) * 1000))
    with pytest.raises(CertificateError, match="expired"):
        cert.validate(root, cert.expires_ms + 1)
    with pytest.raises(CertificateError, match="trust root"):
        cert.validate(PublicKey(public_key(bytes(32))), int(T0 * 1000))


def test_no_certificate_before_an_identity_key_was_uploaded() -> None:
    lab = Lab()
    w = with_issuer(lab.device("alice"))
    w.feed(SenderCertRequest(3))
    (answer,) = w.take()
    assert isinstance(answer, RequestFailed)
    assert (answer.request_id, answer.code) == (3, ErrorCode.NO_PREKEYS)
    assert w.core.state is State.OPEN


def test_set_access_key_stores_it_and_answers_a_certificate() -> None:
    lab = Lab()
    w = uploaded(lab)
    w.feed(SetAccessKey(4, b"\x01" * 16))
    (answer,) = w.take()
    assert isinstance(answer, SenderCert) and answer.request_id == 4
    assert run_now(lab.store.access_key("alice")) == b"\x01" * 16
    w.feed(SetAccessKey(5, b"\x02" * 16))  # a block rotates it: the new one replaces it
    assert isinstance(w.take()[0], SenderCert)
    assert run_now(lab.store.access_key("alice")) == b"\x02" * 16


def test_a_store_failure_is_a_request_failure_and_stores_nothing() -> None:
    lab = Lab()
    w = uploaded(lab)
    w.fail[PutAccessKey] = StoreUnavailable("full")
    w.feed(SetAccessKey(4, b"\x01" * 16))
    (answer,) = w.take()
    assert isinstance(answer, RequestFailed) and answer.code == ErrorCode.STORE_UNAVAILABLE
    assert run_now(lab.store.access_key("alice")) is None
    w.fail[ReadIdentityKey] = StoreUnavailable("full")
    w.feed(SenderCertRequest(5))
    assert [f.code for f in w.take() if isinstance(f, RequestFailed)] == [
        ErrorCode.STORE_UNAVAILABLE
    ]
    assert w.core.state is State.OPEN


def unidentified(lab: Lab) -> Wire:
    w = lab.wire(b"")
    w.core = RelayCore(lab.config, lab.limits, lambda n: bytes(n), store_retry_after=1.0)
    w.core.handshake_done(b"", "192.0.2.9", T0, unidentified=True)
    return w


def test_an_unidentified_session_pings_but_may_not_ask_for_a_certificate() -> None:
    lab = Lab()
    w = unidentified(lab)
    assert w.core.state is State.UNIDENTIFIED and w.core.noise_key is None
    w.feed(Ping(1))
    assert w.take() == [Pong(1)]
    for frame in (SenderCertRequest(1), SetAccessKey(1, bytes(16))):
        w = unidentified(lab)
        w.feed(frame, run=False)
        assert w.held == []  # refused before the store is asked anything
        assert w.closed_with().code == ErrorCode.UNEXPECTED_FRAME
