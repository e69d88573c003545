"""Prekeys and bundles (tidings.e2e.prekeys): validation, golden bytes, fuzz, signatures, upkeep.

The identity signature scheme lives in ``tidings.e2e.keys``; these tests sign with plain
Ed25519 from ``cryptography`` (a 32-byte public key, 64-byte deterministic signatures), which is
all ``verify_bundle`` needs to know about it.
"""

from __future__ import annotations

import hashlib
import math

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.e2e.kem import KEM_PUBLIC_KEY_LEN, Rng, kem_public_key
from tidings.e2e.prekeys import (
    KEM_KEY_TYPE_MLKEM1024,
    MAX_BUNDLE_LEN,
    MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    PREKEY_LOW_WATERMARK,
    SIGNED_PREKEY_ROTATION,
    KemPreKey,
    OneTimePreKey,
    PreKeyBundle,
    PrivatePreKey,
    SignedPreKey,
    generate_kem_prekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
    one_time_prekeys_to_upload,
    signed_prekey_due,
    verify_bundle,
)
from tidings.errors import FrameError, LocalProtocolError, RemoteProtocolError
from tidings.wire.limits import ErrorCode

FUZZ = settings(max_examples=200, deadline=None, database=None)
NOW = 1_700_000_000.75


def seeded_rng(label: bytes) -> Rng:
    """A deterministic rng: SHAKE-256 of ``label`` and a call counter."""
    calls = [0]

    def rng(n: int) -> bytes:
        calls[0] += 1
        return hashlib.shake_256(label + calls[0].to_bytes(4, "big")).digest(n)

    return rng


IDENTITY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
IDENTITY_PUBLIC = IDENTITY.public_key().public_bytes_raw()
OTHER_IDENTITY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def sign(message: bytes) -> bytes:
    return IDENTITY.sign(message)


def verify(identity_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(identity_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def make_bundle(label: bytes = b"bundle", with_one_time: bool = True) -> PreKeyBundle:
    rng = seeded_rng(label)
    spk = generate_signed_prekey(7, sign, rng, NOW).prekey
    otk = generate_one_time_prekeys(100, 1, rng)[0].prekey if with_one_time else None
    kem = generate_kem_prekey(9, sign, rng, last_resort=False).prekey
    return PreKeyBundle(IDENTITY_PUBLIC, spk, otk, kem)


BUNDLE = make_bundle()
BUNDLE_LEN = len(BUNDLE.serialize())
KEM_PUBLIC = kem_public_key(bytes(64))

# --- golden bytes ----------------------------------------------------------------------------


def test_golden_layout_from_fixed_keys() -> None:
    """The wire form byte for byte, assembled by hand from MessagePack's spec (not msgpack)."""
    ik, spk, sig, otk = bytes(range(32)), b"\x11" * 32, b"\x22" * 64, b"\x33" * 32
    bundle = PreKeyBundle(
        ik,
        SignedPreKey(7, spk, sig, 1_700_000_000),
        OneTimePreKey(0x01020304, otk),
        KemPreKey(2**32 - 1, KEM_PUBLIC, sig, last_resort=True),
    )
    expected = (
        bytes.fromhex("95 01 c420") + ik  # fixarray(5), version 1, bin8(32)
        + bytes.fromhex("94 07 c420") + spk + bytes.fromhex("c440") + sig
        + bytes.fromhex("ce 6553f100")  # uint32 1700000000
        + bytes.fromhex("92 ce 01020304 c420") + otk
        + bytes.fromhex("94 ce ffffffff c5 0620") + KEM_PUBLIC  # bin16(1568)
        + bytes.fromhex("c440") + sig + bytes.fromhex("c3")  # true
    )  # fmt: skip
    assert bundle.serialize() == expected
    assert PreKeyBundle.parse(expected) == bundle
    without = PreKeyBundle(ik, bundle.signed_prekey, None, bundle.kem_prekey).serialize()
    assert without == expected.replace(bytes.fromhex("92 ce 01020304 c420") + otk, b"\xc0")


def test_golden_generated_bundle() -> None:
    """A bundle generated from a seeded rng and a fixed identity key, frozen whole."""
    data = BUNDLE.serialize()
    assert len(data) == 1819
    assert hashlib.sha256(data).hexdigest() == GOLDEN_BUNDLE_SHA256
    assert data[:4].hex() == "9501c420"


GOLDEN_BUNDLE_SHA256 = "1437a9e14754416babd59f804a589c0af8a4a1d54bf73f0b939a72bd28804fac"

# --- round trips and parsing -----------------------------------------------------------------


@pytest.mark.parametrize("with_one_time", [True, False])
def test_round_trip(with_one_time: bool) -> None:
    bundle = make_bundle(with_one_time=with_one_time)
    assert PreKeyBundle.parse(bundle.serialize()) == bundle


def test_every_truncation_is_refused() -> None:
    data = BUNDLE.serialize()
    for end in range(len(data)):
        with pytest.raises(FrameError):
            PreKeyBundle.parse(data[:end])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(FrameError) as info:
        PreKeyBundle.parse(BUNDLE.serialize() + b"\x00")
    assert info.value.code == ErrorCode.MALFORMED_FRAME


def test_too_large_is_refused_before_decoding() -> None:
    with pytest.raises(FrameError) as info:
        PreKeyBundle.parse(b"\x95" + bytes(MAX_BUNDLE_LEN))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_unknown_version() -> None:
    data = bytes([0x95, 0x02]) + BUNDLE.serialize()[2:]
    with pytest.raises(FrameError) as info:
        PreKeyBundle.parse(data)
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION


def _fields() -> list[object]:
    spk, otk, kem = BUNDLE.signed_prekey, BUNDLE.one_time_prekey, BUNDLE.kem_prekey
    assert otk is not None
    return [
        1,
        BUNDLE.identity_key,
        [spk.key_id, spk.public, spk.signature, spk.created_at],
        [otk.key_id, otk.public],
        [kem.key_id, kem.public, kem.signature, kem.last_resort],
    ]


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        ((1,), b"\x00" * 31, ErrorCode.INVALID_FIELD),
        ((1,), "text", ErrorCode.INVALID_FIELD),
        ((2, 0), -1, ErrorCode.INVALID_FIELD),
        ((2, 0), 2**32, ErrorCode.INVALID_FIELD),
        ((2, 0), True, ErrorCode.INVALID_FIELD),
        ((2, 3), 1.5, ErrorCode.INVALID_FIELD),
        ((2, 2), b"\x00" * 63, ErrorCode.INVALID_FIELD),
        ((3, 1), b"\x00" * 33, ErrorCode.INVALID_FIELD),
        ((3,), [1], ErrorCode.MALFORMED_FRAME),
        ((3,), {}, ErrorCode.MALFORMED_FRAME),
        ((4, 1), b"\xff" * KEM_PUBLIC_KEY_LEN, ErrorCode.INVALID_FIELD),  # fails the modulus check
        ((4, 1), b"\x00" * 32, ErrorCode.INVALID_FIELD),
        ((4, 3), 1, ErrorCode.INVALID_FIELD),
        ((4,), None, ErrorCode.MALFORMED_FRAME),
    ],
)
def test_bad_fields(path: tuple[int, ...], value: object, code: ErrorCode) -> None:
    fields = _fields()
    target: list[object] = fields
    for index in path[:-1]:
        target = target[index]  # type: ignore[assignment]
    target[path[-1]] = value
    with pytest.raises(FrameError) as info:
        PreKeyBundle.parse(msgpack.packb(fields, use_bin_type=True))
    assert info.value.code == code


@pytest.mark.parametrize(
    "obj", [None, 1, [], [1], [1, 2, 3, 4, 5, 6], {"v": 1}, ["1", 2, 3, 4, 5], [1.0, 2, 3, 4, 5]]
)
def test_bad_shapes(obj: object) -> None:
    with pytest.raises(FrameError):
        PreKeyBundle.parse(msgpack.packb(obj, use_bin_type=True))


def test_wrong_prekey_types_are_refused_on_construction() -> None:
    spk, kem = BUNDLE.signed_prekey, BUNDLE.kem_prekey
    with pytest.raises(FrameError):
        PreKeyBundle(IDENTITY_PUBLIC, kem, None, kem)  # type: ignore[arg-type]
    with pytest.raises(FrameError):
        PreKeyBundle(IDENTITY_PUBLIC, spk, spk, kem)  # type: ignore[arg-type]
    with pytest.raises(FrameError):
        PreKeyBundle(IDENTITY_PUBLIC, spk, None, spk)  # type: ignore[arg-type]


# --- fuzz: accepted, or rejected with FrameError ---------------------------------------------


def parse_or_frame_error(data: bytes) -> None:
    try:
        bundle = PreKeyBundle.parse(data)
    except FrameError:
        return
    assert PreKeyBundle.parse(bundle.serialize()) == bundle


@FUZZ
@given(st.binary(max_size=2 * MAX_BUNDLE_LEN))
def test_fuzz_garbage(data: bytes) -> None:
    parse_or_frame_error(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, BUNDLE_LEN - 1), st.integers(0, 255)), max_size=8))
def test_fuzz_mutated_bundle(edits: list[tuple[int, int]]) -> None:
    data = bytearray(BUNDLE.serialize())
    for position, value in edits:
        data[position] = value
    parse_or_frame_error(bytes(data))


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=40) | st.sampled_from([b"\x00" * 32, b"\x00" * 64, KEM_PUBLIC]),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=20,
)  # fmt: skip


@FUZZ
@given(st.lists(msgpack_values, min_size=5, max_size=5).map(lambda xs: [1, *xs[1:]]))
def test_fuzz_structured(obj: list[object]) -> None:
    parse_or_frame_error(msgpack.packb(obj, use_bin_type=True))


# --- signatures ------------------------------------------------------------------------------


def test_signed_messages_follow_libsignal() -> None:
    spk, kem = BUNDLE.signed_prekey, BUNDLE.kem_prekey
    assert spk.signed_message() == b"\x05" + spk.public and len(spk.signed_message()) == 33
    assert kem.signed_message() == b"\x0a" + kem.public and len(kem.signed_message()) == 1569
    assert KEM_KEY_TYPE_MLKEM1024 == 0x0A
    assert spk.signature == IDENTITY.sign(spk.signed_message())
    assert kem.signature == IDENTITY.sign(kem.signed_message())


def test_verify_bundle_accepts_a_genuine_bundle() -> None:
    verify_bundle(BUNDLE, verify)
    verify_bundle(make_bundle(with_one_time=False), verify)


def test_tampered_signed_prekey_is_refused() -> None:
    spk = BUNDLE.signed_prekey
    forged = SignedPreKey(spk.key_id, b"\x09" + spk.public[1:], spk.signature, spk.created_at)
    bundle = PreKeyBundle(IDENTITY_PUBLIC, forged, BUNDLE.one_time_prekey, BUNDLE.kem_prekey)
    with pytest.raises(RemoteProtocolError, match="signed prekey"):
        verify_bundle(bundle, verify)


def test_tampered_kem_prekey_is_refused() -> None:
    kem = BUNDLE.kem_prekey
    forged = KemPreKey(kem.key_id, KEM_PUBLIC, kem.signature, kem.last_resort)
    bundle = PreKeyBundle(IDENTITY_PUBLIC, BUNDLE.signed_prekey, None, forged)
    with pytest.raises(RemoteProtocolError, match="kem prekey"):
        verify_bundle(bundle, verify)


def test_another_identity_key_is_refused() -> None:
    other = OTHER_IDENTITY.public_key().public_bytes_raw()
    bundle = PreKeyBundle(other, BUNDLE.signed_prekey, None, BUNDLE.kem_prekey)
    with pytest.raises(RemoteProtocolError):
        verify_bundle(bundle, verify)


def test_a_signature_swapped_between_key_types_is_refused() -> None:
    """The type byte is signed: the EC prekey's signature does not pass for the KEM key."""
    kem = BUNDLE.kem_prekey
    swapped = KemPreKey(kem.key_id, kem.public, BUNDLE.signed_prekey.signature, False)
    with pytest.raises(RemoteProtocolError):
        verify_bundle(PreKeyBundle(IDENTITY_PUBLIC, BUNDLE.signed_prekey, None, swapped), verify)


def test_last_resort_flag_is_not_signed() -> None:
    kem = BUNDLE.kem_prekey
    flipped = KemPreKey(kem.key_id, kem.public, kem.signature, not kem.last_resort)
    verify_bundle(PreKeyBundle(IDENTITY_PUBLIC, BUNDLE.signed_prekey, None, flipped), verify)


# --- generation ------------------------------------------------------------------------------


def test_generate_signed_prekey() -> None:
    signed: list[bytes] = []

    def recording_sign(message: bytes) -> bytes:
        signed.append(message)
        return sign(message)

    pair = generate_signed_prekey(5, recording_sign, seeded_rng(b"spk"), NOW)
    assert pair.prekey.key_id == 5 and pair.prekey.created_at == math.floor(NOW)
    assert signed == [pair.prekey.signed_message()]
    assert pair == generate_signed_prekey(5, sign, seeded_rng(b"spk"), NOW)
    assert "private" not in repr(pair).replace("PrivatePreKey", "")


def test_generate_one_time_prekeys() -> None:
    keys = generate_one_time_prekeys(2**32 - 3, 3, seeded_rng(b"otk"))
    assert [k.prekey.key_id for k in keys] == [2**32 - 3, 2**32 - 2, 2**32 - 1]
    assert len({k.prekey.public for k in keys}) == 3
    batch = generate_one_time_prekeys(0, MAX_ONE_TIME_PREKEYS_PER_UPLOAD, seeded_rng(b"batch"))
    assert [k.prekey.key_id for k in batch] == list(range(100))


@pytest.mark.parametrize(("start", "count"), [(0, 0), (0, 101), (2**32 - 2, 3), (-1, 1)])
def test_generate_one_time_prekeys_limits(start: int, count: int) -> None:
    with pytest.raises(LocalProtocolError):
        generate_one_time_prekeys(start, count, seeded_rng(b"otk"))


@pytest.mark.parametrize("last_resort", [True, False])
def test_generate_kem_prekey(last_resort: bool) -> None:
    pair = generate_kem_prekey(3, sign, seeded_rng(b"kem"), last_resort)
    assert pair.prekey.last_resort is last_resort and len(pair.private) == 64
    assert kem_public_key(pair.private) == pair.prekey.public
    assert pair.prekey.signature == sign(pair.prekey.signed_message())


def test_generation_argument_errors() -> None:
    rng = seeded_rng(b"errors")
    for bad_now in (-1.0, math.nan, math.inf):
        with pytest.raises(LocalProtocolError):
            generate_signed_prekey(1, sign, rng, bad_now)
    with pytest.raises(LocalProtocolError):
        generate_signed_prekey(2**32, sign, rng, NOW)
    with pytest.raises(LocalProtocolError, match="64-byte signature"):
        generate_kem_prekey(1, lambda m: b"short", rng, False)
    with pytest.raises(LocalProtocolError):
        generate_kem_prekey(1, sign, rng, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rng"):
        generate_signed_prekey(1, sign, lambda n: b"", NOW)


def test_private_prekey_must_match() -> None:
    spk = generate_signed_prekey(1, sign, seeded_rng(b"a"), NOW)
    kem = generate_kem_prekey(1, sign, seeded_rng(b"a"), False)
    with pytest.raises(LocalProtocolError):
        PrivatePreKey(spk.prekey, bytes(32))
    with pytest.raises(LocalProtocolError):
        PrivatePreKey(kem.prekey, bytes(64))
    with pytest.raises(LocalProtocolError):
        PrivatePreKey(kem.prekey, spk.private)
    assert PrivatePreKey(kem.prekey, kem.private) == kem


# --- upkeep ----------------------------------------------------------------------------------


def test_signed_prekey_rotation() -> None:
    spk = BUNDLE.signed_prekey
    assert SIGNED_PREKEY_ROTATION == 7 * 86400
    assert not signed_prekey_due(spk, spk.created_at + SIGNED_PREKEY_ROTATION - 1)
    assert signed_prekey_due(spk, spk.created_at + SIGNED_PREKEY_ROTATION)


def test_one_time_prekeys_to_upload() -> None:
    assert one_time_prekeys_to_upload(0) == MAX_ONE_TIME_PREKEYS_PER_UPLOAD
    assert one_time_prekeys_to_upload(PREKEY_LOW_WATERMARK - 1) == MAX_ONE_TIME_PREKEYS_PER_UPLOAD
    assert one_time_prekeys_to_upload(PREKEY_LOW_WATERMARK) == 0
