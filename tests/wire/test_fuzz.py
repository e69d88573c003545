"""Fuzzing the codec (CONVENTIONS §8): whatever the bytes, the answer is frames or FrameError.

Four sources of input, from blind to structured: arbitrary bytes; length-prefixed arbitrary
bodies; MessagePack arrays of the right shape with arbitrary values; and valid frames built from
random field values, then mutated (bit flips, truncation, inserted and deleted bytes). The
decoder must also answer the same whatever the split of the stream into chunks.

Examples are few and derandomized (fixed per test), so the module runs in seconds and never
flakes; raise ``max_examples`` locally to search harder.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.errors import FrameError
from tidings.wire import (
    MAX_TARGETS,
    AccountRefusal,
    DeviceDetail,
    Frame,
    FrameDecoder,
    FrameType,
    KemKey,
    MultiAccount,
    MultiDevice,
    OneTimeKey,
    SealedDevice,
    SealedMultiAccount,
    SignedKey,
    Target,
    encode,
    parse,
)

from .samples import FIELD_KINDS, SAMPLES, Kind
from .streams import prefixed

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

U63 = 2**63 - 1

# ---------------------------------------------------------------- helpers


def parse_outcome(body: bytes) -> Frame | FrameError:
    """parse(body), or the FrameError it raised. Any other exception fails the test."""
    try:
        frame = parse(body)
    except FrameError as exc:
        return exc
    # Whatever is accepted is a valid frame: it re-encodes to something that parses to itself.
    assert parse(frame.serialize()) == frame
    return frame


def decode_outcome(chunks: list[bytes]) -> tuple[list[Frame], int | None, int]:
    """(frames, error code or None, bytes buffered) of a new decoder fed ``chunks``."""
    decoder = FrameDecoder()
    code = None
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
    except FrameError as exc:
        code = exc.code
    return decoder.frames(), code, decoder.buffered


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted, deduplicated)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def assert_chunking_does_not_matter(stream: bytes, cuts: list[int]) -> None:
    whole = decode_outcome([stream])
    assert decode_outcome(split(stream, cuts)) == whole
    if len(stream) <= 300:
        assert decode_outcome([stream[i : i + 1] for i in range(len(stream))]) == whole


# ---------------------------------------------------------------- strategies

accounts = st.text(string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=32)
uints = st.one_of(st.integers(0, 300), st.integers(0, U63))
times = st.one_of(
    st.integers(0, 10**12 - 1),
    st.floats(0, 1e12, exclude_max=True, allow_nan=False, allow_infinity=False),
)


key_ids = st.integers(0, 2**32 - 1)
ec_keys = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
kem_keys = st.sampled_from([bytes(1568), b"\xff" * 1568])


def utf8_text(limit: int) -> st.SearchStrategy[str]:
    return st.text(max_size=limit).filter(lambda s: len(s.encode()) <= limit)


KIND_STRATEGIES: dict[Kind, st.SearchStrategy[Any]] = {
    "uint": uints,
    "account": accounts,
    "time": times,
    "message_id": st.binary(min_size=16, max_size=16),
    "payload": st.binary(max_size=300),
    "link_code": st.binary(max_size=64),
    "link_code_or_nil": st.none() | st.binary(max_size=64),
    "device_name": utf8_text(64),
    "reason": utf8_text(256),
    "bool": st.booleans(),
    "deliver_kind": st.sampled_from([0, 1, 2, 3]),
    "targets": st.lists(
        st.tuples(accounts, uints, st.binary(max_size=100)),
        min_size=1,
        max_size=MAX_TARGETS,
        unique_by=lambda t: (t[0], t[1]),
    ).map(lambda ts: tuple(Target(*t) for t in ts)),
    "device_ids": st.lists(uints, max_size=MAX_TARGETS).map(tuple),
    "refs": st.lists(st.tuples(accounts, uints), max_size=12).map(tuple),
    "identity_key": st.binary(min_size=32, max_size=33),
    "signed_prekey": st.builds(SignedKey, key_ids, ec_keys, signatures),
    "one_time_prekeys": st.lists(
        st.builds(OneTimeKey, key_ids, ec_keys), max_size=8, unique_by=lambda k: k.key_id
    ).map(tuple),
    "kem_prekeys": st.lists(
        st.builds(KemKey, key_ids, kem_keys, signatures, st.just(False)),
        max_size=3,
        unique_by=lambda k: k.key_id,
    ).map(tuple),
    "one_time_prekey_or_nil": st.none() | st.builds(OneTimeKey, key_ids, ec_keys),
    "kem_prekey": st.builds(KemKey, key_ids, kem_keys, signatures, st.booleans()),
    "push_endpoint": utf8_text(1024).filter(bool),
    "push_key": st.binary(min_size=65, max_size=65),
    "push_auth": st.binary(min_size=16, max_size=16),
    "push_state": st.sampled_from([0, 1, 2]),
    "push_endpoint_or_empty": utf8_text(1024),
    "device_id": st.integers(1, 2**63 - 1),
    "shared": st.binary(max_size=300),
    "recipients": st.lists(
        st.tuples(
            accounts,
            st.lists(
                st.builds(MultiDevice, uints, st.binary(max_size=128)),
                min_size=1,
                max_size=4,
                unique_by=lambda d: d.device_id,
            ).map(tuple),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda a: a[0],
    ).map(lambda accs: tuple(MultiAccount(a, ds) for a, ds in accs)),
    "refusals": st.lists(
        st.builds(
            AccountRefusal,
            accounts,
            uints,
            st.lists(uints, max_size=4).map(tuple),
            st.lists(uints, max_size=4).map(tuple),
        ),
        max_size=4,
    ).map(tuple),
    "certify_or_nil": st.none()
    | st.tuples(st.integers(1, 2**63 - 1), st.binary(min_size=1, max_size=256)),
    "device_details": st.lists(
        st.builds(DeviceDetail, uints, times, st.booleans(), st.binary(max_size=256)),
        max_size=MAX_TARGETS,
    ).map(tuple),
    "tag": st.binary(min_size=16, max_size=16),
    "access_key": st.binary(min_size=16, max_size=16),
    "sealed_devices": st.lists(
        st.builds(SealedDevice, uints, st.binary(max_size=100)),
        min_size=1,
        max_size=MAX_TARGETS,
        unique_by=lambda d: d.device_id,
    ).map(tuple),
    "tags": st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=8).map(tuple),
    "sealed_recipients": st.lists(
        st.tuples(
            accounts,
            st.binary(min_size=16, max_size=16),
            st.lists(
                st.builds(MultiDevice, uints, st.binary(max_size=128)),
                min_size=1,
                max_size=4,
                unique_by=lambda d: d.device_id,
            ).map(tuple),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda a: a[0],
    ).map(lambda accs: tuple(SealedMultiAccount(a, k, ds) for a, k, ds in accs)),
    "sender_certificate": st.binary(min_size=1, max_size=512),
    "tag_states": st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.sampled_from([0, 1, 2, 3])), max_size=8
    ).map(tuple),
}


def frames_of(frame_type: FrameType) -> st.SearchStrategy[Frame]:
    """Valid frames of one type, with random field values."""
    cls = type(SAMPLES[frame_type])
    return st.builds(cls, *(KIND_STRATEGIES[k] for k in FIELD_KINDS[frame_type]))


valid_frames = st.sampled_from(list(FrameType)).flatmap(frames_of)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def shaped_bodies(draw: st.DrawFn) -> bytes:
    """MessagePack arrays ``[type, …]`` with about the right number of arbitrary fields."""
    frame_type = draw(st.sampled_from(list(FrameType)) | st.integers(-5, 300) | msgpack_values)
    arity = len(FIELD_KINDS[frame_type]) if isinstance(frame_type, FrameType) else 2
    count = draw(st.integers(max(0, arity - 1), arity + 1))
    fields = draw(st.lists(msgpack_values, min_size=count, max_size=count))
    if isinstance(frame_type, FrameType) and count == arity and draw(st.booleans()):
        # keep most fields valid, so the checks of the later fields are reached too
        valid = SAMPLES[frame_type].fields()
        keep = draw(st.lists(st.booleans(), min_size=arity, max_size=arity))
        fields = [v if k else f for v, f, k in zip(valid, fields, keep, strict=True)]
    return msgpack.packb([frame_type, *fields], use_bin_type=True)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random bit flips, truncations, insertions and deletions."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del out[i:]
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and out:
            del out[i]
        elif op == "overwrite" and out:
            out[i] = draw(st.integers(0, 255))
    return bytes(out)


# ---------------------------------------------------------------- arbitrary input


@FUZZ
@given(st.binary(max_size=400))
def test_parse_of_arbitrary_bytes(body: bytes) -> None:
    parse_outcome(body)


@FUZZ
@given(shaped_bodies())
def test_parse_of_arbitrary_msgpack_arrays(body: bytes) -> None:
    parse_outcome(body)


@FUZZ
@given(msgpack_values)
def test_parse_of_arbitrary_msgpack_values(value: object) -> None:
    parse_outcome(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_decoder_on_arbitrary_bytes(stream: bytes, cuts: list[int]) -> None:
    assert_chunking_does_not_matter(stream, cuts)


@FUZZ
@given(
    st.lists(st.binary(max_size=60) | shaped_bodies(), max_size=5),
    st.lists(st.integers(0, 1000), max_size=8),
)
def test_decoder_on_length_prefixed_garbage(bodies: list[bytes], cuts: list[int]) -> None:
    assert_chunking_does_not_matter(b"".join(prefixed(b) for b in bodies), cuts)


# ---------------------------------------------------------------- valid frames


@FUZZ
@given(valid_frames)
def test_round_trip(frame: Frame) -> None:
    body = frame.serialize()
    parsed = parse(body)
    assert parsed == frame
    assert type(parsed) is type(frame)
    assert parsed.serialize() == body


@FUZZ
@given(st.lists(valid_frames, max_size=6), st.lists(st.integers(0, 5000), max_size=10))
def test_a_stream_of_valid_frames_decodes_whatever_the_chunks(
    frames: list[Frame], cuts: list[int]
) -> None:
    stream = b"".join(encode(f) for f in frames)
    assert decode_outcome(split(stream, cuts)) == (frames, None, 0)


@FUZZ
@given(valid_frames.flatmap(lambda f: mutated(f.serialize())))
def test_parse_of_mutated_frames(body: bytes) -> None:
    parse_outcome(body)


@FUZZ
@given(
    st.lists(valid_frames, min_size=1, max_size=3).flatmap(
        lambda fs: mutated(b"".join(encode(f) for f in fs))
    ),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_decoder_on_mutated_streams(stream: bytes, cuts: list[int]) -> None:
    assert_chunking_does_not_matter(stream, cuts)
