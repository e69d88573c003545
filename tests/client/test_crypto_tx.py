"""Crypto writes travel with the transaction that stores what they produced (issue 9).

A decryption's session state, pins and used prekeys are handed to the store method that
commits the message (``crypto=``); they land in that method's COMMIT (or the batch's) and in no
other, and a transaction that fails drops them and makes the session cache reload from disk.
Two real stores, :class:`DeviceCrypto` driven directly (the peer's bundle built from its stored
prekeys); a second connection reads what is on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.test_e2e import ALICE, BOB, NOW, Side, install
from tidings.client.store import CryptoWrites
from tidings.delivery import Message
from tidings.errors import StoreError
from tidings.store.base import DeviceRef


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    alice, bob = Side(tmp_path, ALICE), Side(tmp_path, BOB)
    install(alice, bob.bundle(BOB))
    yield alice, bob
    alice.store.close()
    bob.store.close()


def on_disk(side: Side) -> sqlite3.Connection:
    """A second connection to ``side``'s store file: what is committed."""
    return sqlite3.connect(side.store.path)


def disk_session(side: Side, peer: DeviceRef) -> bytes | None:
    with on_disk(side) as db:
        row = db.execute(
            "SELECT record FROM e2e_sessions WHERE account = ? AND device_id = ?",
            (peer.account, peer.device_id),
        ).fetchone()
    return None if row is None else bytes(row[0])


def disk_count(side: Side, sql: str) -> int:
    with on_disk(side) as db:
        return int(db.execute(sql).fetchone()[0])


def receive(bob: Side, seq: int, payload: bytes) -> bool:
    """Decrypt ``payload`` from alice and store it as inbox item ``seq``, its crypto writes
    with it."""
    writes = CryptoWrites(bob.now)
    opened = bob.crypto.open(ALICE, payload, writes)
    mid = seq.to_bytes(16, "big")
    message = Message("alice:bob", seq, NOW, opened.content)
    return bob.store.commit_incoming(seq, ALICE, mid, message, NOW, crypto=writes)


def test_a_message_and_its_session_state_land_in_one_commit(pair: tuple[Side, Side]) -> None:
    alice, bob = pair
    payload = alice.seal(BOB, b"one")
    statements: list[str] = []
    bob.store._db.set_trace_callback(statements.append)
    assert receive(bob, 1, payload)
    bob.store._db.set_trace_callback(None)
    begin = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    commit = [i for i, s in enumerate(statements) if s.startswith("COMMIT")]
    assert len(begin) == len(commit) == 1  # one transaction
    inside = statements[begin[0] : commit[0]]
    assert any("INSERT INTO messages" in s for s in inside)
    assert any("e2e_sessions" in s for s in inside)
    assert any("e2e_identities" in s for s in inside)  # the pin of a first message
    assert any("DELETE FROM e2e_prekeys" in s for s in inside)  # its one-time prekey
    assert disk_session(bob, ALICE) is not None


def test_in_a_batch_nothing_is_on_disk_before_its_commit_and_all_after(
    pair: tuple[Side, Side],
) -> None:
    alice, bob = pair
    payloads = [alice.seal(BOB, f"m{i}".encode()) for i in range(5)]
    bob.store.begin_batch()
    for seq, payload in enumerate(payloads, 1):
        assert receive(bob, seq, payload)
    assert disk_session(bob, ALICE) is None
    assert disk_count(bob, "SELECT COUNT(*) FROM messages") == 0
    assert disk_count(bob, "SELECT seq FROM cursor") == 0
    assert bob.store.cursor() == 5  # the batch's own reads see its writes
    statements: list[str] = []
    bob.store._db.set_trace_callback(statements.append)
    bob.store.commit_batch()
    bob.store._db.set_trace_callback(None)
    # the session record, rewritten by each of the 5, is written once, then COMMIT
    assert sum("e2e_sessions" in s for s in statements) == 1
    assert statements[-1].startswith("COMMIT")
    assert disk_count(bob, "SELECT COUNT(*) FROM messages") == 5
    assert disk_count(bob, "SELECT seq FROM cursor") == 5
    assert disk_session(bob, ALICE) == bob.crypto.session(ALICE).serialize()


def test_a_rolled_back_batch_keeps_nothing_and_the_sessions_reload_from_disk(
    pair: tuple[Side, Side],
) -> None:
    alice, bob = pair
    first, second = alice.seal(BOB, b"first"), alice.seal(BOB, b"second")
    assert receive(bob, 1, first)  # committed on its own
    before = disk_session(bob, ALICE)
    bob.store.begin_batch()
    assert receive(bob, 2, second)
    bob.store.rollback_batch()
    assert disk_session(bob, ALICE) == before
    assert disk_count(bob, "SELECT COUNT(*) FROM messages") == 1
    assert bob.store.cursor() == 1
    assert not bob.crypto._sessions  # the rollback hook dropped the cached sessions
    # Loaded from disk again, the session has not used the second message's key yet: it
    # decrypts again (a cache that ran ahead would refuse it as a duplicate).
    assert receive(bob, 2, second)
    assert disk_count(bob, "SELECT COUNT(*) FROM messages") == 2


def test_a_failed_savepoint_drops_its_writes_and_the_batch_goes_on(
    pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    payloads = [alice.seal(BOB, f"m{i}".encode()) for i in range(3)]
    bob.store.begin_batch()
    assert receive(bob, 1, payloads[0])

    def fail(*args: object) -> None:
        raise StoreError("injected")

    with monkeypatch.context() as m:
        m.setattr(bob.store, "_show", fail)
        with pytest.raises(StoreError):
            receive(bob, 2, payloads[1])
    assert not bob.crypto._sessions
    assert bob.store.cursor() == 1  # the failed method's cursor move went with it
    # Reloaded through the batch's write set: the state after message 1, not the disk's.
    assert receive(bob, 2, payloads[1])
    assert receive(bob, 3, payloads[2])
    bob.store.commit_batch()
    assert disk_count(bob, "SELECT COUNT(*) FROM messages") == 3
    assert disk_session(bob, ALICE) == bob.crypto.session(ALICE).serialize()


def test_crypto_writes_no_transaction_carried_are_never_committed_by_a_later_one(
    pair: tuple[Side, Side],
) -> None:
    alice, bob = pair
    assert receive(bob, 1, alice.seal(BOB, b"one"))
    committed = disk_session(bob, ALICE)
    writes = CryptoWrites(bob.now)
    bob.crypto.open(ALICE, alice.seal(BOB, b"two"), writes)  # decrypted, never stored
    assert writes.sessions
    bob.store.add_trace(b"\x01" * 16, "composed", NOW)  # an unrelated transaction
    bob.store.advance_cursor(2)  # another, without crypto writes
    assert disk_session(bob, ALICE) == committed


def test_a_failed_transaction_with_crypto_writes_reloads_the_sessions(
    pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = pair
    assert receive(bob, 1, alice.seal(BOB, b"one"))
    committed = disk_session(bob, ALICE)
    payload = alice.seal(BOB, b"two")

    def fail(*args: object) -> None:
        raise StoreError("injected")

    with monkeypatch.context() as m:
        m.setattr(bob.store, "_show", fail)
        with pytest.raises(StoreError):
            receive(bob, 2, payload)
    assert disk_session(bob, ALICE) == committed
    assert disk_count(bob, "SELECT seq FROM cursor") == 1
    assert not bob.crypto._sessions
    assert receive(bob, 2, payload)  # the session reloaded from disk still opens it
