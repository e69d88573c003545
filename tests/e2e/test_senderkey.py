"""Sender keys (tidings.e2e.senderkey) against libsignal's own bytes.

tests/vectors/signal/libsignal-senderkey.json was made by libsignal (@signalapp/libsignal-client
0.103.0, tests/vectors/libsignal/senderkey.mjs): it decrypted *our* distribution message and
group messages (whose bytes are pinned here as golden), and it made chains and messages of its
own, which we decrypt here — out of order, across a rotation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.libsignal_fixture import DISTRIBUTION_ID, ours_senderkey, plaintext, seeded_rng
from tidings.e2e.senderkey import (
    MAX_CACHED_KEYS,
    MAX_FORWARD_JUMP,
    MAX_STATES,
    DuplicateMessage,
    NoSenderKeyError,
    SenderKeyRecord,
    group_decrypt,
    group_encrypt,
    new_distribution,
    process_distribution,
    rotate,
)
from tidings.e2e.senderkey_wire import SenderKeyDistributionMessage, SenderKeyMessage
from tidings.errors import DecryptionError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signal" / "libsignal-senderkey.json").read_text()
)
THEIRS = VECTORS["libsignal"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def received(distribution: str) -> SenderKeyRecord:
    return process_distribution(
        SenderKeyRecord(), SenderKeyDistributionMessage.parse(h(distribution))
    )


def test_our_bytes_are_the_ones_libsignal_decrypted() -> None:
    pinned = {k: v for k, v in VECTORS["ours"].items() if k != "libsignal_decrypted"}
    assert VECTORS["ours"]["libsignal_decrypted"] is True
    assert ours_senderkey() == pinned


def test_we_decrypt_libsignals_messages_out_of_order_and_across_a_rotation() -> None:
    first, second = THEIRS["first"], THEIRS["second"]
    skdm = SenderKeyDistributionMessage.parse(h(first["distribution"]))
    assert skdm.chain_id == first["chain_id"] and skdm.iteration == 0
    assert skdm.distribution_id.hex() == THEIRS["distribution_id"].replace("-", "")
    assert SenderKeyDistributionMessage.parse(skdm.serialize()) == skdm
    assert skdm.serialize() == h(first["distribution"])  # our encoder writes libsignal's bytes
    record = received(first["distribution"])
    held_back = 10
    for i in [0, 2, 1, 29, 5, 3, 4, *range(6, 10), *range(11, 29)]:
        record, plain = group_decrypt(record, h(first["messages"][i]["message"]))
        assert plain == h(first["messages"][i]["plaintext"]), i
    # the rotation: a new chain; the old chain's late message still decrypts
    record = process_distribution(
        record, SenderKeyDistributionMessage.parse(h(second["distribution"]))
    )
    assert [s.chain_id for s in record.states] == [second["chain_id"], first["chain_id"]]
    for m in second["messages"]:
        record, plain = group_decrypt(record, h(m["message"]))
        assert plain == h(m["plaintext"])
    record, plain = group_decrypt(record, h(first["messages"][held_back]["message"]))
    assert plain == h(first["messages"][held_back]["plaintext"])


def test_a_message_twice_is_a_duplicate_and_a_replayed_distribution_does_not_rewind() -> None:
    first = THEIRS["first"]
    record = received(first["distribution"])
    record, _ = group_decrypt(record, h(first["messages"][0]["message"]))
    with pytest.raises(DuplicateMessage):
        group_decrypt(record, h(first["messages"][0]["message"]))
    record = process_distribution(
        record, SenderKeyDistributionMessage.parse(h(first["distribution"]))
    )
    with pytest.raises(DuplicateMessage):  # the chain was not reset to iteration 0
        group_decrypt(record, h(first["messages"][0]["message"]))


def test_without_the_chain_the_receiver_is_told_to_ask_for_it() -> None:
    second = THEIRS["second"]
    record = received(THEIRS["first"]["distribution"])
    with pytest.raises(NoSenderKeyError):
        group_decrypt(record, h(second["messages"][0]["message"]))


def test_tampered_messages_fail_and_change_nothing() -> None:
    first = THEIRS["first"]
    record = received(first["distribution"])
    good = h(first["messages"][0]["message"])
    parsed = SenderKeyMessage.parse(good)
    flipped_body = bytearray(good)
    flipped_body[len(parsed.signed) - 3] ^= 1  # inside the ciphertext: the signature fails
    flipped_sig = bytearray(good)
    flipped_sig[-5] ^= 1
    for bad in (
        bytes(flipped_body),
        bytes(flipped_sig),
        good[:-1],  # a byte short of its signature
        b"\x23" + good[1:],  # message version 2
        b"",
        b"\x33",
        b"\x33" + b"\xff" * 80,
    ):
        with pytest.raises(DecryptionError):
            group_decrypt(record, bad)
    _, plain = group_decrypt(record, good)  # nothing above moved the chain
    assert plain == h(first["messages"][0]["plaintext"])
    for bad_skdm in (
        b"",
        b"\x33",
        h(first["distribution"])[:-1],
        b"\x22" + h(first["distribution"])[1:],
    ):
        with pytest.raises(DecryptionError):
            SenderKeyDistributionMessage.parse(bad_skdm)


def own(seed: bytes) -> tuple[SenderKeyRecord, SenderKeyDistributionMessage]:
    return new_distribution(SenderKeyRecord(), DISTRIBUTION_ID, seeded_rng(seed))


def test_the_forward_jump_and_the_skipped_keys_are_bounded() -> None:
    mine, skdm = own(b"jump")
    theirs = process_distribution(SenderKeyRecord(), skdm)
    messages = []
    for i in range(MAX_CACHED_KEYS + 2):
        mine, m = group_encrypt(mine, DISTRIBUTION_ID, plaintext(i % 5))
        messages.append(m)
    theirs, _ = group_decrypt(theirs, messages[-1])  # skips MAX_CACHED_KEYS + 1 keys
    with pytest.raises(DuplicateMessage):  # the oldest skipped key was dropped
        group_decrypt(theirs, messages[0])
    theirs, plain = group_decrypt(theirs, messages[1])  # the newest MAX_CACHED_KEYS kept
    assert plain == plaintext(1)
    # a message MAX_FORWARD_JUMP + 1 ahead of where the receiver stands is refused
    sender, skdm = own(b"far")
    receiver = process_distribution(SenderKeyRecord(), skdm)
    ahead = sender.states[0]
    for _ in range(MAX_FORWARD_JUMP + 1):
        ahead = ahead.advanced()
    _, jumped = group_encrypt(sender.replaced(ahead), DISTRIBUTION_ID, b"far")
    with pytest.raises(DecryptionError):
        group_decrypt(receiver, jumped)
    _, near = group_encrypt(sender.replaced(sender.states[0].advanced()), DISTRIBUTION_ID, b"n")
    assert group_decrypt(receiver, near)[1] == b"n"


def test_a_member_removed_cannot_read_what_follows_the_rotation() -> None:
    mine, skdm = own(b"rotation")
    leaver = process_distribution(SenderKeyRecord(), skdm)
    stayer = process_distribution(SenderKeyRecord(), skdm)
    mine, before = group_encrypt(mine, DISTRIBUTION_ID, b"before")
    leaver_bytes = group_decrypt(leaver, before)[0].serialize()  # the leaver's real stored keys
    mine = rotate(mine)
    mine, skdm2 = new_distribution(mine, DISTRIBUTION_ID, seeded_rng(b"rotation 2"))
    assert skdm2.chain_id != skdm.chain_id and skdm2.signing_key != skdm.signing_key
    stayer = process_distribution(stayer, skdm2)  # only the remaining members get it
    mine, after = group_encrypt(mine, DISTRIBUTION_ID, b"after the leaver left")
    assert group_decrypt(stayer, after)[1] == b"after the leaver left"
    with pytest.raises(NoSenderKeyError):
        group_decrypt(SenderKeyRecord.parse(leaver_bytes), after)


def test_a_record_stores_and_reloads_and_keeps_at_most_max_states() -> None:
    mine, skdm = own(b"record")
    theirs = process_distribution(SenderKeyRecord(), skdm)
    mine, m0 = group_encrypt(mine, DISTRIBUTION_ID, b"zero")
    mine, m1 = group_encrypt(mine, DISTRIBUTION_ID, b"one")
    theirs, _ = group_decrypt(theirs, m1)  # m0's key is kept as skipped
    for record in (mine, theirs):
        assert SenderKeyRecord.parse(record.serialize()) == record
    reloaded = SenderKeyRecord.parse(theirs.serialize())
    assert group_decrypt(reloaded, m0)[1] == b"zero"
    mine2 = SenderKeyRecord.parse(mine.serialize())
    mine2, m2 = group_encrypt(mine2, DISTRIBUTION_ID, b"two")  # the sender goes on after a reload
    assert group_decrypt(reloaded, m2)[1] == b"two"
    with pytest.raises(ValueError):
        SenderKeyRecord.parse(b"\x0a\x05junk!")
    many = SenderKeyRecord()
    for i in range(MAX_STATES + 1):
        many = process_distribution(many, own(bytes([i]))[1])
    assert len(many.states) == MAX_STATES
    with pytest.raises(NoSenderKeyError):  # the oldest chain was dropped
        group_decrypt(many, group_encrypt(own(bytes([0]))[0], DISTRIBUTION_ID, b"x")[1])
