"""e2e.ratchet: the key schedule as two peers, skipped keys and their bounds, storage."""

from __future__ import annotations

import pytest

from tidings.e2e import (
    MAX_SKIP_GAP,
    MAX_SKIP_PER_CHAIN,
    Header,
    KeyPair,
    MessageKeys,
    RatchetParams,
    RatchetState,
    SendingChainMissingError,
)
from tidings.e2e.ratchet import STATE_VERSION
from tidings.errors import DecryptionError

from ._support import seeded_rng

ROOT = bytes(range(32))


def _pair() -> tuple[RatchetState, RatchetState]:
    rng = seeded_rng(3)
    bob_spk = KeyPair.generate(rng)
    alice = RatchetState.initiator(ROOT, bob_spk.public, KeyPair.generate(rng))
    return alice, RatchetState.responder(ROOT, bob_spk)


def _send(state: RatchetState, n: int) -> tuple[list[tuple[Header, MessageKeys]], RatchetState]:
    sent = []
    for _ in range(n):
        header, keys, state = state.sending_step()
        sent.append((header, keys))
    return sent, state


def test_libsignal_bounds() -> None:
    assert (MAX_SKIP_PER_CHAIN, MAX_SKIP_GAP) == (2000, 25_000)


def test_in_order_and_reply() -> None:
    alice, bob = _pair()
    rng = seeded_rng(4)
    sent, alice = _send(alice, 3)
    for header, keys in sent:
        received, bob = bob.receiving_step(header, rng)
        assert received == keys
    replies, bob = _send(bob, 2)
    assert replies[0][0].previous_counter == 0  # Bob never sent on his first (prekey) key
    for header, keys in replies:
        received, alice = alice.receiving_step(header, rng)
        assert received == keys
    again, alice = _send(alice, 1)
    assert again[0][0].previous_counter == 2  # libsignal: index of the last message, Ns - 1
    assert again[0][0].ratchet_key != sent[0][0].ratchet_key


def test_responder_cannot_send_first() -> None:
    with pytest.raises(SendingChainMissingError):
        _pair()[1].sending_step()


def test_out_of_order_within_bounds_and_across_ratchets() -> None:
    alice, bob = _pair()
    rng = seeded_rng(5)
    first, alice = _send(alice, 5)
    received, bob = bob.receiving_step(first[4][0], rng)  # skips 0..3
    assert received == first[4][1]
    reply, bob = _send(bob, 1)
    _, alice = alice.receiving_step(reply[0][0], rng)
    second, alice = _send(alice, 2)
    received, bob = bob.receiving_step(second[1][0], rng)  # new chain; old one closed at 4
    for header, keys in [first[2], second[0], first[0], first[3], first[1]]:
        received, bob = bob.receiving_step(header, rng)
        assert received == keys


def test_duplicate_is_rejected_and_state_unchanged() -> None:
    alice, bob = _pair()
    rng = seeded_rng(6)
    sent, alice = _send(alice, 2)
    _, bob = bob.receiving_step(sent[1][0], rng)
    _, bob = bob.receiving_step(sent[0][0], rng)
    for header, _keys in sent:
        with pytest.raises(DecryptionError):
            bob.receiving_step(header, rng)


def test_gap_beyond_bound_rejected() -> None:
    alice, bob = _pair()
    params = RatchetParams(max_skip_gap=10)
    sent, alice = _send(alice, 12)
    before = bob.serialize()
    with pytest.raises(DecryptionError):
        bob.receiving_step(sent[11][0], seeded_rng(7), params)  # a jump of 11
    assert bob.serialize() == before
    received, _ = bob.receiving_step(sent[10][0], seeded_rng(7), params)  # a jump of 10
    assert received == sent[10][1]


def test_default_gap_bound() -> None:
    alice, bob = _pair()
    header, _, _ = alice.sending_step()
    far = Header(header.ratchet_key, MAX_SKIP_GAP + 1, 0)
    with pytest.raises(DecryptionError):
        bob.receiving_step(far, seeded_rng(8))


def test_previous_counter_gap_is_bounded_too() -> None:
    alice, bob = _pair()
    params = RatchetParams(max_skip_gap=10)
    sent, alice = _send(alice, 1)
    _, bob = bob.receiving_step(sent[0][0], seeded_rng(9), params)
    reply, bob = _send(bob, 1)
    _, alice = alice.receiving_step(reply[0][0], seeded_rng(9), params)
    header, _, _ = alice.sending_step()
    lying = Header(header.ratchet_key, header.counter, 50)  # "I sent 51 on the old chain"
    with pytest.raises(DecryptionError):
        bob.receiving_step(lying, seeded_rng(9), params)


def test_oldest_skipped_keys_are_dropped_per_chain() -> None:
    alice, bob = _pair()
    params = RatchetParams(max_skip_per_chain=3)
    sent, alice = _send(alice, 6)
    _, bob = bob.receiving_step(sent[5][0], seeded_rng(10), params)  # skips 0..4, keeps 2..4
    assert [i for i, _ in bob.receiving[-1].skipped] == [2, 3, 4]
    for index in (0, 1):
        with pytest.raises(DecryptionError):
            bob.receiving_step(sent[index][0], seeded_rng(10), params)
    received, _ = bob.receiving_step(sent[2][0], seeded_rng(10), params)
    assert received == sent[2][1]


def test_total_bound_drops_oldest_chains_first() -> None:
    alice, bob = _pair()
    params = RatchetParams(max_skip_per_chain=10, max_skipped_total=6)
    rng = seeded_rng(11)
    sent, alice = _send(alice, 5)
    _, bob = bob.receiving_step(sent[4][0], rng, params)  # 4 skipped on chain 1
    reply, bob = _send(bob, 1)
    _, alice = alice.receiving_step(reply[0][0], rng, params)
    more, alice = _send(alice, 5)
    _, bob = bob.receiving_step(more[4][0], rng, params)  # 4 more on chain 2: total 8 > 6
    assert [len(c.skipped) for c in bob.receiving] == [2, 4]
    assert [i for i, _ in bob.receiving[0].skipped] == [2, 3]


def test_old_chains_are_bounded() -> None:
    alice, bob = _pair()
    params = RatchetParams(max_receiving_chains=2)
    rng = seeded_rng(12)
    for _ in range(4):
        sent, alice = _send(alice, 1)
        _, bob = bob.receiving_step(sent[0][0], rng, params)
        reply, bob = _send(bob, 1)
        _, alice = alice.receiving_step(reply[0][0], rng, params)
    assert len(bob.receiving) == 2


def test_state_round_trips_through_bytes() -> None:
    alice, bob = _pair()
    rng = seeded_rng(13)
    sent, alice = _send(alice, 4)
    _, bob = bob.receiving_step(sent[3][0], rng)
    for state in (alice, bob):
        assert RatchetState.parse(state.serialize()) == state
    restored = RatchetState.parse(bob.serialize())
    received, _ = restored.receiving_step(sent[1][0], rng)
    assert received == sent[1][1]


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\xc1", b"\x93\x01\x02\x03", _pair()[0].serialize()[:-3]]
)
def test_corrupt_state_is_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        RatchetState.parse(data)


def test_other_version_is_refused() -> None:
    data = bytearray(_pair()[0].serialize())
    assert data[1] == STATE_VERSION  # msgpack: array header, then the version
    data[1] = STATE_VERSION + 1
    with pytest.raises(ValueError):
        RatchetState.parse(bytes(data))


def test_message_keys_cbc() -> None:
    keys = MessageKeys.from_seed(bytes(32))
    assert len(keys.cipher_key) == len(keys.mac_key) == 32 and len(keys.iv) == 16
    ciphertext = keys.encrypt(b"x" * 159)
    assert len(ciphertext) == 160
    assert keys.decrypt(ciphertext) == b"x" * 159
    for bad in (b"", ciphertext[:-1], ciphertext[:-16] + bytes(16)):
        with pytest.raises(DecryptionError):
            keys.decrypt(bad)
