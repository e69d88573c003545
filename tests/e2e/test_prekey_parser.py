"""e2e.message fast paths: a prekey part seen before is not parsed again (PreKeyParser), the
usual WhisperMessage layout is read directly; the results are always the general parse's
(differential, over built and mutated messages)."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.e2e import PreKeyWhisperMessage, PublicKey, WhisperMessage
from tidings.e2e import message as message_module
from tidings.e2e.message import KNOWN_PREKEY_PARTS, PreKeyParser
from tidings.errors import DecryptionError

from ._support import load_vectors

KEY_A = PublicKey(bytes(range(32)))
KEY_B = PublicKey(bytes(range(1, 33)))
CIPHERTEXT = bytes(range(256)) * 6 + bytes(32)
V4_PREKEY = bytes.fromhex(load_vectors("tidings-pqxdh-session.json")["expected"]["prekey_message"])


def whisper(counter: int, version: int = 4) -> WhisperMessage:
    return WhisperMessage.create(
        ratchet_key=KEY_A,
        counter=counter,
        previous_counter=0,
        ciphertext=bytes([counter % 256]) * (16 + counter % 40),
        mac_key=b"k" * 32,
        sender_ik=KEY_A,
        receiver_ik=KEY_B,
        version=version,
    )


def prekey_message(counter: int, *, prekey_id: int | None = 9, v4: bool = True) -> bytes:
    return PreKeyWhisperMessage(
        registration_id=7,
        prekey_id=prekey_id,
        signed_prekey_id=5,
        base_key=KEY_A,
        identity_key=KEY_B,
        message=whisper(counter, 4 if v4 else 3),
        kem_prekey_id=3 if v4 else None,
        kem_ciphertext=CIPHERTEXT if v4 else None,
    ).serialize()


def same_as_full_parse(parser: PreKeyParser, data: bytes) -> None:
    try:
        expected: PreKeyWhisperMessage | None = PreKeyWhisperMessage.parse(data)
    except DecryptionError:
        expected = None
    if expected is None:
        with pytest.raises(DecryptionError):
            parser.parse(data)
    else:
        assert parser.parse(data) == expected


@pytest.mark.parametrize("v4", [True, False])
def test_the_messages_of_one_session_parse_as_in_full(v4: bool) -> None:
    parser = PreKeyParser()
    for counter in range(50):
        same_as_full_parse(parser, prekey_message(counter, v4=v4))
    assert len(parser._known) == 1  # one prekey part, remembered once


def test_a_known_part_around_a_bad_or_other_version_message_is_refused() -> None:
    parser = PreKeyParser()
    first = prekey_message(0)
    parser.parse(first)
    good = prekey_message(1)
    inner = whisper(1).serialize()
    at = good.index(inner)
    v3_inside = good[:at] + whisper(1, 3).serialize() + good[at + len(inner) :]
    for bad in (v3_inside, good[:at] + b"\x44" + good[at + 1 :]):
        same_as_full_parse(parser, bad)


def test_a_second_inner_message_later_wins_as_in_full() -> None:
    parser = PreKeyParser()
    extra = b"\x22" + bytes([len(whisper(7).serialize())]) + whisper(7).serialize()
    for counter in range(3):  # the same part (with a later field 4) each time
        data = prekey_message(counter) + extra
        same_as_full_parse(parser, data)
        assert parser.parse(data).message.counter == 7  # the last occurrence, as protobuf says


def test_it_remembers_a_bounded_number_of_parts() -> None:
    parser = PreKeyParser()
    for prekey_id in range(KNOWN_PREKEY_PARTS * 3):
        same_as_full_parse(parser, prekey_message(0, prekey_id=prekey_id))
    assert len(parser._known) == KNOWN_PREKEY_PARTS


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.binary(max_size=8),
)
def test_fuzz_mutated_messages_after_a_warm_up(edits: list[tuple[int, int]], tail: bytes) -> None:
    for original in (V4_PREKEY, prekey_message(3)):
        parser = PreKeyParser()
        parser.parse(original)  # its part is known
        data = bytearray(original)
        for position, value in edits:
            data[position % len(data)] = value
        same_as_full_parse(parser, bytes(data) + tail)
        same_as_full_parse(parser, bytes(data[: edits[0][0] % len(data)]))
        same_as_full_parse(parser, original + tail)


# -- WhisperMessage.parse: the usual layout read directly, the same result as the decoder ----


def parse_generic(data: bytes) -> WhisperMessage | None:
    with mock.patch.object(message_module, "_usual_whisper_fields", lambda body: None):
        try:
            return WhisperMessage.parse(data)
        except DecryptionError:
            return None


def same_as_generic(data: bytes) -> None:
    expected = parse_generic(data)
    if expected is None:
        with pytest.raises(DecryptionError):
            WhisperMessage.parse(data)
    else:
        assert WhisperMessage.parse(data) == expected


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=300),
    st.sampled_from([3, 4]),
)
def test_usual_whisper_messages_parse_as_the_decoder_reads_them(
    counter: int, previous: int, ciphertext: bytes, version: int
) -> None:
    message = WhisperMessage.create(
        ratchet_key=KEY_A,
        counter=counter,
        previous_counter=previous,
        ciphertext=ciphertext,
        mac_key=b"k" * 32,
        sender_ik=KEY_A,
        receiver_ik=KEY_B,
        version=version,
    )
    assert WhisperMessage.parse(message.serialize()) == message
    same_as_generic(message.serialize())


@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
    st.binary(max_size=8),
)
def test_fuzz_mutated_whisper_messages_parse_as_the_decoder_reads_them(
    edits: list[tuple[int, int]], tail: bytes
) -> None:
    data = bytearray(whisper(5).serialize())
    for position, value in edits:
        data[position % len(data)] = value
    same_as_generic(bytes(data))
    same_as_generic(bytes(data) + tail)
    same_as_generic(bytes(data[: edits[0][0] % len(data)]))
