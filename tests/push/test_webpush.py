"""Web Push message encryption (RFC 8291), VAPID (RFC 8292) and the endpoint rules
(tidings.push): RFC 8291's Appendix A byte for byte, and what is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.push.endpoint import EndpointRefused, check_endpoint
from tidings.push.vapid import MAX_LIFETIME, VapidError, authorization, verify
from tidings.push.webpush import PushKeys, WebPushError, decrypt, encrypt


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 8291, Appendix A.
PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")
AS_PUBLIC = b64(
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
UA_PRIVATE = b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")
UA_PUBLIC = b64(
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
SALT = b64("DGv6ra1nlYgDCS1FRnbzlw")
AUTH = b64("BTBZMqHH6r4Tts7J_aSIgg")
BODY = b64(
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS"
    "6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qu"
    "lcy4a-fN"
)


def draws(*chunks: bytes) -> Callable[[int], bytes]:
    queue = list(chunks)

    def rng(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return rng


def test_rfc_8291_appendix_a_byte_for_byte() -> None:
    ua = PushKeys.from_bytes(UA_PRIVATE, AUTH)
    assert ua.public == UA_PUBLIC
    assert encrypt(PLAINTEXT, UA_PUBLIC, AUTH, draws(AS_PRIVATE, SALT)) == BODY
    assert BODY[21:86] == AS_PUBLIC
    assert decrypt(BODY, ua) == PLAINTEXT


def test_padding_hides_the_size_and_tampering_or_other_keys_fail() -> None:
    ua = PushKeys.generate(draws(b"\x07" * 32, b"\x08" * 16))
    short = encrypt(b"x", ua.public, ua.auth, draws(b"\x01" * 32, b"\x02" * 16), pad_to=64)
    longer = encrypt(b"y" * 60, ua.public, ua.auth, draws(b"\x03" * 32, b"\x04" * 16), pad_to=64)
    assert len(short) == len(longer)
    assert decrypt(short, ua) == b"x" and decrypt(longer, ua) == b"y" * 60
    other = PushKeys.generate(draws(b"\x09" * 32, b"\x0a" * 16))
    for bad, keys in (
        (short, other),
        (short[:-1] + bytes([short[-1] ^ 1]), ua),
        (short[:40], ua),
        (short[:20] + b"\x20" + short[21:], ua),  # idlen 32: not a P-256 sender key
    ):
        with pytest.raises(WebPushError):
            decrypt(bad, keys)
    with pytest.raises(WebPushError):
        encrypt(b"x", b"\x04" + bytes(64), ua.auth, draws(b"\x01" * 32, b"\x02" * 16))
    with pytest.raises(WebPushError):
        encrypt(b"x" * 4096, ua.public, ua.auth, draws(b"\x01" * 32, b"\x02" * 16))


def test_a_vapid_token_verifies_as_a_push_service_checks_it() -> None:
    key = ec.derive_private_key(12345678901234567890, ec.SECP256R1())
    endpoint = "https://push.example.net:8443/wpush/v2/abc"
    header = authorization(key, endpoint, "mailto:ops@example.org", now=1_700_000_000)
    claims = verify(header, endpoint, now=1_700_000_100)
    assert claims == {
        "aud": "https://push.example.net:8443",
        "exp": 1_700_000_000 + 12 * 3600,
        "sub": "mailto:ops@example.org",
    }
    token = header.split("t=")[1].split(",")[0]
    assert json.loads(b64(token.split(".")[0])) == {"typ": "JWT", "alg": "ES256"}
    with pytest.raises(VapidError, match="another push service"):
        verify(header, "https://other.example/x", now=1_700_000_100)
    with pytest.raises(VapidError, match="expired"):
        verify(header, endpoint, now=1_700_000_000 + 13 * 3600)
    forged = header.replace(token.split(".")[1], token.split(".")[1][:-2] + "AA")
    with pytest.raises(VapidError):
        verify(forged, endpoint, now=1_700_000_100)
    with pytest.raises(VapidError):
        authorization(key, endpoint, "ops@example.org", now=0)
    with pytest.raises(VapidError):
        authorization(key, endpoint, "mailto:x@y", now=0, lifetime=MAX_LIFETIME + 1)


@pytest.mark.parametrize(
    ("url", "addresses", "why"),
    [
        ("http://push.example/x", ["93.184.216.34"], "https://"),
        ("https://u:p@push.example/x", ["93.184.216.34"], "user name"),
        ("https://push.example/x", [], "does not resolve"),
        ("https://push.example/x", ["127.0.0.1"], "not a public address"),
        ("https://push.example/x", ["93.184.216.34", "10.0.0.7"], "10.0.0.7"),
        ("https://push.example/x", ["169.254.169.254"], "not a public"),  # cloud metadata
        ("https://push.example/x", ["::1"], "not a public"),
        ("https://push.example/x", ["::ffff:192.168.1.1"], "192.168.1.1"),
        ("https://push.example/x", ["fd00::1"], "not a public"),
        ("https://push.example/x", ["224.0.0.1"], "not a public"),
        ("https://" + "a" * 1100, ["93.184.216.34"], "at most"),
    ],
)
def test_endpoints_the_relay_refuses(url: str, addresses: list[str], why: str) -> None:
    with pytest.raises(EndpointRefused, match=why):
        check_endpoint(url, addresses)


def test_endpoints_the_relay_calls() -> None:
    check_endpoint("https://updates.push.example/wpush/v2/x", ["93.184.216.34", "2606:2800::1"])
    # a receiver on this machine or the LAN only when the operator allows private endpoints
    check_endpoint("http://127.0.0.1:8080/push/x", ["127.0.0.1"], allow_private=True)
    with pytest.raises(EndpointRefused):
        check_endpoint("ftp://127.0.0.1/x", ["127.0.0.1"], allow_private=True)
