"""The payload layer's worked examples (``tidings-payloads.json``) against our code and the spec.

The file is ours, produced once by ``tests/e2e/_payload_examples.py`` and frozen. Besides the
byte-for-byte rerun, each value is checked here from its definition in docs/protocol.md §12,
without the code that made it: the identity's X25519 key from the Ed25519 seed (RFC 8032 §5.1.5,
RFC 7748), the signature as plain Ed25519 once the sign bit is cleared, the safety number by its
SHA-512 iteration, the contents by a MessagePack decoder, the padding by its rule.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tidings.e2e import PublicKey, edwards_to_montgomery, xeddsa_verify

from ._payload_examples import examples
from ._support import load_vectors

VECTOR = load_vectors("tidings-payloads.json")
MID = bytes(range(16))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_the_vector_is_ours_and_our_code_reproduces_it() -> None:
    assert "ours, frozen" in VECTOR["source"]
    assert examples() == VECTOR


def test_an_identity_key_is_the_montgomery_form_of_the_ed25519_key() -> None:
    for identity in VECTOR["identities"].values():
        scalar = bytearray(hashlib.sha512(h(identity["seed"])).digest()[:32])
        scalar[0] &= 248
        scalar[31] = (scalar[31] & 127) | 64
        assert bytes(scalar).hex() == identity["x25519_private"]
        public = X25519PrivateKey.from_private_bytes(bytes(scalar)).public_key()
        assert public.public_bytes_raw().hex() == identity["identity_key"]
        assert (
            edwards_to_montgomery(h(identity["ed25519_public"])).hex() == identity["identity_key"]
        )
        assert identity["identity_key_33"] == "05" + identity["identity_key"]


def test_a_prekey_signature_is_ed25519_with_the_sign_bit_in_its_last_byte() -> None:
    bob = VECTOR["identities"]["bob"]
    ed_public = h(bob["ed25519_public"])
    spk, kem = VECTOR["prekeys"]["signed_prekey"], VECTOR["prekeys"]["kem_prekey"]
    for message, signature in (
        (h(spk["signed_message"]), h(spk["signature"])),
        (h(kem["signed_message_prefix"]) + h(kem["public"]), h(kem["signature"])),
    ):
        assert signature[63] >> 7 == ed_public[31] >> 7  # the Edwards sign bit, copied
        stripped = signature[:63] + bytes([signature[63] & 0x7F])
        Ed25519PublicKey.from_public_bytes(ed_public).verify(stripped, message)  # raises if bad
        assert xeddsa_verify(PublicKey(h(bob["identity_key"])), message, signature)
    assert spk["signed_message"] == "05" + spk["public"]
    assert len(h(kem["public"])) == 1568


def test_the_contents_decode_to_their_documented_arrays() -> None:
    contents = VECTOR["contents"]
    message = msgpack.unpackb(h(contents["message"]["hex"]))
    assert message == [1, 1, "alice:bob", 1, 1700000000.25, b"hello, bob"]
    receipt = msgpack.unpackb(h(contents["receipt"]["hex"]))
    assert receipt == [1, 2, 1, [MID], 1700000001.5]
    resend = msgpack.unpackb(h(contents["resend"]["hex"]))
    assert resend == [1, 3, MID, h(contents["message"]["hex"])]
    retry = msgpack.unpackb(h(contents["retry_request"]["hex"]))
    assert retry == [1, 4, "alice", 1, [MID]]
    assert contents["retry_request_payload"]["hex"] == "10" + contents["retry_request"]["hex"]


def test_padding_is_0x80_then_zeros_to_160k_minus_1() -> None:
    padded = h(VECTOR["contents"]["message_padded"]["hex"])
    content = h(VECTOR["contents"]["message"]["hex"])
    assert len(padded) == VECTOR["contents"]["message_padded"]["length"] == 159
    assert padded == content + b"\x80" + bytes(159 - len(content) - 1)


def _party(keys: list[bytes], stable_id: str, iterations: int) -> str:
    logical = b"".join(sorted(keys))
    digest = b"\x00\x00" + logical + stable_id.encode()
    for _ in range(iterations):
        digest = hashlib.sha512(digest + logical).digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def test_the_safety_numbers_follow_their_definition() -> None:
    numbers: dict[str, Any] = VECTOR["safety_numbers"]
    for case in ("one_device_each", "alice_with_two_devices"):
        local_id, *local = numbers[case]["local"]
        remote_id, *remote = numbers[case]["remote"]
        ours = _party([h(k) for k in local], local_id, numbers["iterations"])
        theirs = _party([h(k) for k in remote], remote_id, numbers["iterations"])
        assert numbers[case]["number"] == min(ours, theirs) + max(ours, theirs)
