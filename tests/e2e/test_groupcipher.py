"""A group's encryption through the GroupCipher interface (tidings.e2e.groupcipher): keys go
only to member devices, a device without one is told to ask, and a removed member reads
nothing that follows — with its real stored records."""

from __future__ import annotations

import pytest

from tests.e2e.libsignal_fixture import seeded_rng
from tidings.e2e.groupcipher import GroupCipher, NoSenderKeyError, SenderKeyCipher
from tidings.e2e.senderkey import SenderKeyRecord
from tidings.errors import DecryptionError
from tidings.refs import DeviceRef

GROUP = bytes.fromhex("00112233445566778899aabbccddeeff")
ALICE, BOB1, BOB2, CAROL = (
    DeviceRef("alice", 1),
    DeviceRef("bob", 1),
    DeviceRef("bob", 2),
    DeviceRef("carol", 1),
)


def ciphers() -> dict[DeviceRef, SenderKeyCipher]:
    return {d: SenderKeyCipher(d, seeded_rng(str(d).encode())) for d in (ALICE, BOB1, BOB2, CAROL)}


def give(sender: SenderKeyCipher, to: SenderKeyCipher) -> None:
    material = sender.key_for(GROUP, to.me)
    assert material is not None
    to.accept_key(GROUP, sender.me, material)
    sender.given(GROUP, to.me)


def test_one_ciphertext_for_every_member_device_and_keys_only_once() -> None:
    c = ciphers()
    alice: GroupCipher = c[ALICE]
    for member in (BOB1, CAROL):
        give(c[ALICE], c[member])
    assert alice.key_for(GROUP, BOB1) is None  # bob.1 has the current key already
    ciphertext = alice.encrypt(GROUP, b"hello group")
    assert c[BOB1].decrypt(GROUP, ALICE, ciphertext) == b"hello group"
    assert c[CAROL].decrypt(GROUP, ALICE, ciphertext) == b"hello group"
    # bob's second device never got the key: it is told to ask; alice gives it the key (from
    # where her chain stands now) and sends the message again, encrypted anew
    with pytest.raises(NoSenderKeyError):
        c[BOB2].decrypt(GROUP, ALICE, ciphertext)
    give(c[ALICE], c[BOB2])
    with pytest.raises(DecryptionError):  # the old ciphertext is before the key it got
        c[BOB2].decrypt(GROUP, ALICE, ciphertext)
    again = c[ALICE].encrypt(GROUP, b"hello group")
    assert c[BOB2].decrypt(GROUP, ALICE, again) == b"hello group"
    with pytest.raises(DecryptionError):  # claimed to be from carol: bob.2 has no key of hers
        c[BOB2].decrypt(GROUP, CAROL, again)


def test_a_removed_member_reads_nothing_that_follows_with_its_stored_keys() -> None:
    c = ciphers()
    for member in (BOB1, CAROL):
        give(c[ALICE], c[member])
    before = c[ALICE].encrypt(GROUP, b"before")
    assert c[CAROL].decrypt(GROUP, ALICE, before) == b"before"
    stored = {k: v.serialize() for k, v in c[CAROL].records().items()}  # carol's disk
    c[ALICE].member_left(GROUP)  # carol removed
    assert c[ALICE].key_for(GROUP, BOB1) is not None  # a new key for those who stay
    give(c[ALICE], c[BOB1])
    after = c[ALICE].encrypt(GROUP, b"after carol left")
    assert c[BOB1].decrypt(GROUP, ALICE, after) == b"after carol left"
    carol = SenderKeyCipher(CAROL, seeded_rng(b"again"))
    carol.load({k: SenderKeyRecord.parse(v) for k, v in stored.items()})
    with pytest.raises(NoSenderKeyError):
        carol.decrypt(GROUP, ALICE, after)


def test_the_records_reload_and_the_conversation_goes_on() -> None:
    c = ciphers()
    give(c[ALICE], c[BOB1])
    first = c[ALICE].encrypt(GROUP, b"one")
    alice = SenderKeyCipher(ALICE, seeded_rng(b"restart"))
    alice.load(
        {k: SenderKeyRecord.parse(v.serialize()) for k, v in c[ALICE].records().items()},
        {GROUP: c[ALICE].given_to(GROUP)},
    )
    assert alice.key_for(GROUP, BOB1) is None
    second = alice.encrypt(GROUP, b"two")
    assert c[BOB1].decrypt(GROUP, ALICE, second) == b"two"
    assert c[BOB1].decrypt(GROUP, ALICE, first) == b"one"  # the late one, by its kept key
    other_group = SenderKeyCipher(CAROL, seeded_rng(b"x")).key_for(bytes(16), BOB1)
    assert other_group is not None
    with pytest.raises(DecryptionError):
        c[BOB1].accept_key(GROUP, CAROL, other_group)
