"""e2e.message: the libsignal v3 wire format, byte-exact, and garbage-proof parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.e2e import PreKeyWhisperMessage, PublicKey, WhisperMessage
from tidings.errors import DecryptionError

from ._support import load_vectors

KEY_A = PublicKey(bytes(range(32)))
KEY_B = PublicKey(bytes(range(1, 33)))


def _vector_messages() -> tuple[list[bytes], list[bytes]]:
    whisper: list[bytes] = []
    prekey: list[bytes] = []
    for test in load_vectors("libsignal-js-testvectors.json")["tests"]:
        for operation, step in test["vectors"]:
            data = bytes.fromhex(
                step["expectedCiphertext"] if operation == "sendMessage" else step["message"]
            )
            (prekey if data[1] == 0x08 else whisper).append(data)
    return whisper, prekey


WHISPER, PREKEY = _vector_messages()


def _whisper(counter: int = 3, previous: int = 2) -> WhisperMessage:
    return WhisperMessage.create(
        ratchet_key=KEY_A,
        counter=counter,
        previous_counter=previous,
        ciphertext=b"c" * 32,
        mac_key=b"k" * 32,
        sender_ik=KEY_A,
        receiver_ik=KEY_B,
    )


def test_vector_messages_round_trip_byte_exact() -> None:
    assert WHISPER and PREKEY
    for data in WHISPER:
        assert WhisperMessage.parse(data).serialize() == data
    for data in PREKEY:
        assert PreKeyWhisperMessage.parse(data).serialize() == data


def test_whisper_layout_and_mac() -> None:
    message = _whisper()
    data = message.serialize()
    assert data[0] == 0x33
    assert data[1:3] == b"\x0a\x21"  # field 1, 33 bytes: the ratchet key
    assert data[36:40] == b"\x10\x03\x18\x02"  # counter 3, previous counter 2
    assert WhisperMessage.parse(data) == message
    assert message.verify_mac(b"k" * 32, KEY_A, KEY_B)
    assert not message.verify_mac(b"k" * 32, KEY_B, KEY_A)  # the direction is bound
    assert not message.verify_mac(b"j" * 32, KEY_A, KEY_B)


@pytest.mark.parametrize("prekey_id", [None, 0, 2**32 - 1])
def test_prekey_message_round_trip(prekey_id: int | None) -> None:
    message = PreKeyWhisperMessage(
        registration_id=10290,
        prekey_id=prekey_id,
        signed_prekey_id=14983230,
        base_key=KEY_A,
        identity_key=KEY_B,
        message=_whisper(),
    )
    assert PreKeyWhisperMessage.parse(message.serialize()) == message


def test_counter_beyond_uint32_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        _whisper(counter=2**32)


def test_fields_in_any_order_and_unknown_fields_parse() -> None:
    message = _whisper()
    body = message.body
    reordered = body[35:] + body[:35] + b"\x28\x05" + b"\x3d" + bytes(4)  # + unknown fields
    parsed = WhisperMessage.parse(b"\x33" + reordered + message.mac)
    assert (parsed.ratchet_key, parsed.counter, parsed.ciphertext) == (
        KEY_A,
        3,
        message.ciphertext,
    )
    assert parsed.body == reordered  # the MAC covers the bytes as received


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x33",
        b"\x32" + bytes(20),
        b"\x33" + b"\xff" * 20,  # an endless varint
        b"\x33\x0a\x40" + bytes(8),  # a field longer than the message
        b"\x33\x0b" + bytes(8),  # wire type 3 (groups) is refused
    ],
)
def test_garbage_is_decryption_error(data: bytes) -> None:
    with pytest.raises(DecryptionError):
        WhisperMessage.parse(data)
    with pytest.raises(DecryptionError):
        PreKeyWhisperMessage.parse(data)


def test_missing_field_is_decryption_error() -> None:
    body = _whisper().body
    with pytest.raises(DecryptionError):
        WhisperMessage.parse(b"\x33" + body[35:] + bytes(8))  # no ratchet key


def _parse_both(data: bytes) -> None:
    for parse in (WhisperMessage.parse, PreKeyWhisperMessage.parse):
        try:
            parse(data)
        except DecryptionError:
            pass


@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _parse_both(data)
    _parse_both(b"\x33" + data)


@given(
    st.sampled_from(WHISPER + PREKEY),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.binary(max_size=8),
)
def test_fuzz_mutated_vectors(original: bytes, edits: list[tuple[int, int]], tail: bytes) -> None:
    data = bytearray(original)
    for position, value in edits:
        data[position % len(data)] = value
    _parse_both(bytes(data) + tail)
    _parse_both(bytes(data[: edits[0][0] % len(data)]))  # truncated


# -- version 4 (PQXDH sessions) -------------------------------------------------------------

CIPHERTEXT = bytes(range(256)) * 6 + bytes(32)  # 1568 bytes: any value parses
V4_PREKEY = load_vectors("tidings-pqxdh-session.json")["expected"]["prekey_message"]


def _v4_prekey(**changes: object) -> PreKeyWhisperMessage:
    fields: dict[str, object] = {
        "registration_id": 7,
        "prekey_id": None,
        "signed_prekey_id": 5,
        "base_key": KEY_A,
        "identity_key": KEY_B,
        "message": _whisper_v4(),
        "kem_prekey_id": 2**32 - 1,
        "kem_ciphertext": CIPHERTEXT,
    }
    fields.update(changes)
    return PreKeyWhisperMessage(**fields)  # type: ignore[arg-type]


def _whisper_v4() -> WhisperMessage:
    return WhisperMessage.create(
        ratchet_key=KEY_A,
        counter=0,
        previous_counter=0,
        ciphertext=b"c" * 16,
        mac_key=b"k" * 32,
        sender_ik=KEY_A,
        receiver_ik=KEY_B,
        version=4,
    )


def test_v4_whisper_layout_and_mac() -> None:
    v4 = _whisper_v4()
    v3 = WhisperMessage.create(
        ratchet_key=KEY_A,
        counter=0,
        previous_counter=0,
        ciphertext=b"c" * 16,
        mac_key=b"k" * 32,
        sender_ik=KEY_A,
        receiver_ik=KEY_B,
    )
    assert v4.serialize()[0] == 0x44 and v4.body == v3.body
    assert v4.mac != v3.mac  # the MAC covers the version byte
    assert WhisperMessage.parse(v4.serialize()) == v4
    with pytest.raises(ValueError):
        WhisperMessage(KEY_A, 0, 0, b"", bytes(8), b"", version=5)


def test_v4_prekey_message_layout_and_round_trip() -> None:
    message = _v4_prekey()
    data = message.serialize()
    assert data[0] == 0x44 and message.version == 4
    tail = b"\x38\xff\xff\xff\xff\x0f" + b"\x42\xa1\x0c" + b"\x0a" + CIPHERTEXT  # fields 7, 8
    assert data.endswith(tail)
    assert PreKeyWhisperMessage.parse(data) == message
    assert PreKeyWhisperMessage.parse(bytes.fromhex(V4_PREKEY)).serialize().hex() == V4_PREKEY


def test_v4_fields_must_match_the_version() -> None:
    with pytest.raises(ValueError):
        _v4_prekey(kem_ciphertext=None)
    with pytest.raises(ValueError):
        _v4_prekey(kem_prekey_id=None)
    with pytest.raises(ValueError):
        _v4_prekey(kem_ciphertext=CIPHERTEXT[:-1])
    with pytest.raises(ValueError):
        _v4_prekey(message=_whisper())  # a v3 message with KEM fields


def _v4_body(**changes: object) -> bytes:
    return _v4_prekey(**changes).serialize()[1:]


@pytest.mark.parametrize(
    "data",
    [
        b"\x44" + _v4_body()[:-1],  # a truncated ciphertext
        b"\x44" + _v4_body().replace(b"\x0a" + CIPHERTEXT, b"\x08" + CIPHERTEXT),  # Kyber1024
        b"\x44" + _v4_body().replace(b"\x38\xff\xff\xff\xff\x0f", b""),  # no KEM prekey id
        b"\x33" + _v4_body(),  # a v3 message with KEM fields (and a v4 message inside)
        b"\x44" + _v4_body().replace(_whisper_v4().serialize()[:1], b"\x33", 1),  # inner v3
        b"\x55" + _v4_body(),  # version 5
    ],
)
def test_bad_v4_prekey_messages_are_decryption_errors(data: bytes) -> None:
    with pytest.raises(DecryptionError):
        PreKeyWhisperMessage.parse(data)


def test_v3_prekey_message_with_kem_fields_is_refused() -> None:
    v3 = PreKeyWhisperMessage(7, None, 5, KEY_A, KEY_B, _whisper()).serialize()
    with pytest.raises(DecryptionError):
        PreKeyWhisperMessage.parse(v3 + b"\x38\x01")


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.binary(max_size=8),
)
def test_fuzz_mutated_v4(edits: list[tuple[int, int]], tail: bytes) -> None:
    data = bytearray.fromhex(V4_PREKEY)
    for position, value in edits:
        data[position % len(data)] = value
    _parse_both(bytes(data) + tail)
    _parse_both(bytes(data[: edits[0][0] % len(data)]))
    _parse_both(b"\x44" + tail)
