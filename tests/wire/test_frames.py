"""Frames as values: an invalid frame cannot be constructed, a valid one is frozen and hashable."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tidings.errors import FrameError
from tidings.wire import (
    CLIENT_FRAMES,
    SERVER_FRAMES,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    Frame,
    FrameType,
    KemKey,
    OneTimeKey,
    Refused,
    Register,
    RequestFailed,
    Send,
    SignedKey,
    Target,
    check_account,
)
from tidings.wire import frames as frames_module

from .samples import (
    EC_A,
    FIELD_KINDS,
    KEM,
    MID,
    SAMPLES,
    SIG,
    VALID_WIRE,
    WRONG_WIRE,
    Kind,
    to_python,
)

INVALID = ErrorCode.INVALID_FIELD

#: Values construction refuses for the fields that are tuples in Python (the wire's arrays).
WRONG_PYTHON: dict[Kind, list[object]] = {
    "targets": [
        (),
        [Target("bob", 1, b"")],  # a list, not a tuple
        (("bob", 1, b""),),  # a tuple, not a Target
        (None,),
        (Target("bob", 1, b""), Target("bob", 1, b"x")),
        tuple(Target("bob", i, b"") for i in range(33)),
        (Target("Bob", 1, b""),),
        (Target("bob", True, b""),),
        (Target("bob", 1, "text"),),  # type: ignore[arg-type]
        (Target("bob", 1, bytes(64 * 1024 + 1)),),
    ],
    "device_ids": [None, [1], (True,), (1.0,), (-1,), ("1",), tuple(range(33))],
    "refs": [
        None,
        [("bob", 1)],
        (["bob", 1],),
        (("bob",),),
        (("bob", 1, 2),),
        (("bob", True),),
        (("Bob", 1),),
        tuple(("b", i) for i in range(33)),
    ],
    "signed_prekey": [
        None,
        (1, EC_A, SIG),
        OneTimeKey(1, EC_A),
        SignedKey(-1, EC_A, SIG),
        SignedKey(2**32, EC_A, SIG),
        SignedKey(True, EC_A, SIG),
        SignedKey(1, bytes(31), SIG),
        SignedKey(1, EC_A, bytes(63)),
        SignedKey(1, bytearray(EC_A), SIG),  # type: ignore[arg-type]
    ],
    "one_time_prekeys": [
        None,
        [OneTimeKey(1, EC_A)],  # a list, not a tuple
        ((1, EC_A),),
        (OneTimeKey(1, EC_A), OneTimeKey(1, EC_A)),
        tuple(OneTimeKey(i, EC_A) for i in range(101)),
        (OneTimeKey(1, bytes(33)),),
        (OneTimeKey(2**32, EC_A),),
    ],
    "kem_prekeys": [
        None,
        [KemKey(1, KEM, SIG, False)],
        ((1, KEM, SIG, False),),
        (KemKey(1, KEM, SIG, 0),),  # type: ignore[arg-type]
        (KemKey(1, KEM[:-1], SIG, False),),
        (KemKey(1, KEM, SIG, False), KemKey(1, KEM, SIG, False)),
        (KemKey(1, KEM, SIG, True), KemKey(2, KEM, SIG, True)),
        tuple(KemKey(i, KEM, SIG, False) for i in range(101)),
    ],
    "one_time_prekey_or_nil": [
        (1, EC_A),
        SignedKey(1, EC_A, SIG),
        OneTimeKey(1, bytes(31)),
        OneTimeKey(-1, EC_A),
    ],
    "kem_prekey": [
        None,
        (1, KEM, SIG, True),
        KemKey(1, KEM, SIG, None),  # type: ignore[arg-type]
        KemKey(1, bytes(1569), SIG, True),
        KemKey(1, KEM, bytes(65), True),
        KemKey(2**32, KEM, SIG, True),
    ],
}


def _build(frame_type: FrameType, index: int, value: object) -> Frame:
    sample = SAMPLES[frame_type]
    kinds = FIELD_KINDS[frame_type]
    args: list[Any] = [to_python(k, v) for k, v in zip(kinds, sample.fields(), strict=True)]
    args[index] = value
    return type(sample)(*args)


def _cases(python: bool) -> list[tuple[str, FrameType, int, object]]:
    cases = []
    for frame_type, kinds in FIELD_KINDS.items():
        for index, kind in enumerate(kinds):
            values = WRONG_PYTHON[kind] if kind in WRONG_PYTHON else WRONG_WIRE[kind]
            if not python:
                values = [to_python(kind, v) for v in VALID_WIRE[kind]]
            for n, value in enumerate(values):
                cases.append((f"{frame_type.name}[{index}]-{kind}-{n}", frame_type, index, value))
    return cases


WRONG = _cases(python=True)
VALID = _cases(python=False)


@pytest.mark.parametrize(
    ("frame_type", "index", "value"), [c[1:] for c in WRONG], ids=[c[0] for c in WRONG]
)
def test_an_invalid_frame_cannot_be_built(frame_type: FrameType, index: int, value: object) -> None:
    with pytest.raises(FrameError) as info:
        _build(frame_type, index, value)
    assert (info.value.code, info.value.frame_type) == (INVALID, frame_type)


@pytest.mark.parametrize(
    ("frame_type", "index", "value"), [c[1:] for c in VALID], ids=[c[0] for c in VALID]
)
def test_a_valid_frame_can_be_built(frame_type: FrameType, index: int, value: object) -> None:
    frame = _build(frame_type, index, value)
    assert getattr(frame, dataclasses.fields(frame)[index].name) == value  # type: ignore[arg-type]


def test_bool_and_float_are_not_integers() -> None:
    with pytest.raises(FrameError):
        Ack(True)
    for kind in (True, False, 1.0, 0.0):  # regression: `kind in (0, 1)` let these through
        with pytest.raises(FrameError):
            Deliver(1, kind, "alice", 1, MID, 0.0, 0.0, b"")  # type: ignore[arg-type]


def test_strings_that_are_not_utf8_are_refused() -> None:
    # Regression: a lone surrogate raised UnicodeEncodeError instead of FrameError.
    with pytest.raises(FrameError) as info:
        Register(1, "alice", "\udc80")
    assert info.value.code == INVALID
    with pytest.raises(FrameError):
        Refused(MID, 9, "bad \ud800")


def test_send_refuses_a_target_that_is_not_a_target() -> None:
    # Regression: this raised AttributeError.
    with pytest.raises(FrameError) as info:
        Send(MID, "bob", (("bob", 1, b""),))  # type: ignore[arg-type]
    assert info.value.code == INVALID


def test_frames_are_frozen_hashable_values() -> None:
    for frame in SAMPLES.values():
        first = dataclasses.fields(frame)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(frame, first, 0)
        copy = dataclasses.replace(frame)  # type: ignore[type-var]
        assert copy == frame and hash(copy) == hash(frame) and copy is not frame
    assert len(set(SAMPLES.values())) == len(SAMPLES)


def test_fields_are_the_dataclass_fields_in_order() -> None:
    for frame_type, frame in SAMPLES.items():
        values = [getattr(frame, f.name) for f in dataclasses.fields(frame)]  # type: ignore[arg-type]
        kinds = FIELD_KINDS[frame_type]
        assert values == [to_python(k, v) for k, v in zip(kinds, frame.fields(), strict=True)]


def test_python_defaults() -> None:
    assert Register(1, "alice", "laptop").link_code is None
    refused = Refused(MID, int(ErrorCode.RATE_LIMITED), "slow down")
    assert (refused.missing, refused.stale, refused.retry_after) == ((), (), 0.0)
    assert Devices(1, "bob", ()).device_ids == ()
    assert RequestFailed(1, int(ErrorCode.NO_PREKEYS), "no prekeys").retry_after == 0.0


def test_directions() -> None:
    client, server = set(CLIENT_FRAMES), set(SERVER_FRAMES)
    assert client == {
        FrameType.HELLO,
        FrameType.REGISTER,
        FrameType.LINK_CODE_REQUEST,
        FrameType.GET_DEVICES,
        FrameType.SEND,
        FrameType.ACK,
        FrameType.PREKEYS_UPLOAD,
        FrameType.PREKEY_FETCH,
        FrameType.PUSH_REGISTER,
        FrameType.PUSH_UNREGISTER,
        FrameType.PUSH_QUERY,
        FrameType.UNLINK,
        FrameType.MULTI_SEND,
        FrameType.DEVICE_QUERY,
        FrameType.SENDER_CERT_REQUEST,
        FrameType.SET_ACCESS_KEY,
        FrameType.SEALED_SEND,
        FrameType.TAG_QUERY,
        FrameType.SEALED_MULTI_SEND,
        FrameType.PING,
        FrameType.PONG,
    }
    assert server == {t for t in FrameType if t >= 20}
    assert all(t < 20 or t >= 40 for t in client)


@pytest.mark.parametrize("name", ["a", "z", "0", "9", "_", "-", "a" * 32, "x-y_z0"])
def test_check_account_accepts(name: str) -> None:
    check_account(name)
    check_account(name)  # again, now from the cache of known names


@pytest.mark.parametrize("name", ["", "A", "a" * 33, "a b", "a.b", "é", "a\n", "a\x00", "ａ"])
def test_check_account_refuses(name: str) -> None:
    for _ in range(2):  # an invalid name is never remembered as valid
        with pytest.raises(FrameError) as info:
            check_account(name, FrameType.GET_DEVICES)
        assert (info.value.code, info.value.frame_type) == (INVALID, FrameType.GET_DEVICES)


def test_check_account_refuses_non_strings() -> None:
    for value in (b"alice", 1, None, ["alice"]):
        with pytest.raises(FrameError):
            check_account(value)  # type: ignore[arg-type]


def test_str_subclasses_are_checked_by_the_regex() -> None:
    class Sneaky(str):
        def __hash__(self) -> int:
            return hash("alice")

        def __eq__(self, other: object) -> bool:
            return True

    check_account("alice")
    with pytest.raises(FrameError):
        check_account(Sneaky("NOT VALID"))


def test_the_cache_of_known_accounts_is_bounded() -> None:
    limit = frames_module._KNOWN_ACCOUNTS_MAX
    for i in range(limit + 10):
        check_account(f"user{i}")
    assert 0 < len(frames_module._known_accounts) <= limit
