"""Our frozen v4 (PQXDH) session messages and the golden bytes of the stored formats.

``tidings-pqxdh-session.json`` pins whole wire messages (prekey message, replies, a message
after skipped keys); ``tidings-storage.json`` pins `RatchetState.serialize` and
`Session.serialize`, so that a change of either stored format fails here. A round trip alone
would pass a symmetric bug (Convention §13): the layout of the v4 prekey message is also
decoded below with a separate minimal protobuf reader, and its keys follow from
``tidings-pqxdh.json``'s root key, pinned against the specification's formula in
``test_pqxdh.py``.
"""

from __future__ import annotations

from tidings.e2e import MessageType, RatchetState, Session
from tidings.e2e.message import PreKeyWhisperMessage, WhisperMessage

from ._pq_scenario import (
    ALICE,
    BOB,
    KEM_CIPHERTEXT,
    bob_prekeys,
    conversation,
    queue,
    stored_session,
)
from ._support import load_vectors

SESSION = load_vectors("tidings-pqxdh-session.json")
STORAGE = load_vectors("tidings-storage.json")
EXPECTED = SESSION["expected"]


def _fields(data: bytes) -> dict[int, int | bytes]:
    """A protobuf reader for the test only (varint and length-delimited fields)."""

    def varint(pos: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos

    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = varint(pos)
        if key & 7 == 0:
            fields[key >> 3], pos = varint(pos)
        else:
            assert key & 7 == 2
            length, pos = varint(pos)
            fields[key >> 3], pos = data[pos : pos + length], pos + length
    return fields


def test_conversation_is_byte_exact() -> None:
    result = conversation(SESSION["keys"], SESSION["plaintexts"])
    assert result.prekey_message.hex() == EXPECTED["prekey_message"]
    assert [r.hex() for r in result.replies] == EXPECTED["replies"]
    assert result.alice_whisper.hex() == EXPECTED["alice_whisper"]


def test_prekey_message_layout() -> None:
    data = bytes.fromhex(EXPECTED["prekey_message"])
    assert data[0] == 0x44
    fields = _fields(data[1:])
    assert sorted(fields) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert (fields[1], fields[6], fields[7]) == (9, 5, 7)  # one-time, signed, KEM prekey ids
    assert fields[5] == SESSION["registration_ids"]["alice"]
    assert fields[3] == ALICE.public.serialize()
    assert fields[8] == b"\x0a" + KEM_CIPHERTEXT  # ML-KEM-1024 type byte, then the ciphertext
    inner = fields[4]
    assert isinstance(inner, bytes) and inner[0] == 0x44
    assert _fields(inner[1:-8])[2] == 0  # counter


def test_messages_decrypt_from_the_vector() -> None:
    keys, texts = SESSION["keys"], SESSION["plaintexts"]
    bob = Session(BOB.dh_key_pair, SESSION["registration_ids"]["bob"])
    prekey_message = bytes.fromhex(EXPECTED["prekey_message"])
    result = bob.decrypt(
        MessageType.PREKEY, prekey_message, queue(keys["bob_ratchet_1"]), bob_prekeys()
    )
    assert result.plaintext == texts["hello"].encode()
    assert (result.used_prekey_id, result.used_kem_prekey_id) == (9, 7)
    assert result.their_identity == ALICE.public
    alice_whisper = bytes.fromhex(EXPECTED["alice_whisper"])
    after = bob.decrypt(MessageType.WHISPER, alice_whisper, queue("11" * 32))  # a DH step
    assert after.plaintext == texts["after"].encode()
    parsed = PreKeyWhisperMessage.parse(prekey_message)
    assert parsed.serialize() == prekey_message
    for reply in EXPECTED["replies"]:
        assert WhisperMessage.parse(bytes.fromhex(reply)).serialize().hex() == reply


def test_ratchet_state_golden_bytes() -> None:
    golden = bytes.fromhex(STORAGE["ratchet_state"]["golden"])
    built = conversation(SESSION["keys"], SESSION["plaintexts"]).alice_ratchet_state
    assert built == golden
    parsed = RatchetState.parse(golden)
    assert parsed.serialize() == golden
    assert golden[:2] == b"\x97\x01"  # a msgpack array of 7, STATE_VERSION 1
    assert [len(chain.skipped) for chain in parsed.receiving] == [2]


def test_session_golden_bytes() -> None:
    record = STORAGE["session"]
    golden = bytes.fromhex(record["golden"])
    assert stored_session(record["keys"]).serialize() == golden
    parsed = Session.parse(golden, ALICE.dh_key_pair)
    assert parsed.serialize() == golden
    assert golden[:2] == b"\x94\x02"  # a msgpack array of 4, SESSION_VERSION 2
    assert parsed.open is not None and parsed.open.version == 3
    [archived] = parsed.archived
    assert archived.version == 4 and archived.pending_prekey is not None
    assert archived.pending_prekey.kem_ciphertext == KEM_CIPHERTEXT
    assert parsed.registration_id == 1111
    assert parsed.encrypt(b"still works")[1][0] == 0x33
