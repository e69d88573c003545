"""Receipts that arrive before the message they confirm (a sibling device's send whose copy
comes late, e.g. resent after a decryption failure): kept, bounded, applied with the copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client.store import ClientStore, Identity, _incoming
from tidings.delivery import Message, Receipt, ReceiptKind, Status
from tidings.refs import DeviceRef

ME = Identity(bytes(range(32)), "bob", 3, "laptop", "ws://relay.example:8080")
BOB1 = DeviceRef("bob", 1)
ALICE1, ALICE2 = DeviceRef("alice", 1), DeviceRef("alice", 2)
CONV = "alice:bob"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(ME)
        yield s


def copy(store: ClientStore, seq: int, n: int) -> None:
    """bob.1's message n to alice arrives here as its sent-message copy."""
    content = Message(CONV, n, 100.0 + n, b"sent from the phone")
    assert store.commit_incoming(
        seq, BOB1, mid(n), content, 200.0, surfaced=[(BOB1, mid(n))], recipient="alice"
    )


def test_a_receipt_before_the_copy_counts_when_the_copy_arrives(store: ClientStore) -> None:
    delivered = Receipt(ReceiptKind.DELIVERED, (mid(1),), 150.0)
    assert store.commit_receipt(1, ALICE1, delivered, 150.5) == []  # nothing to move yet
    read = Receipt(ReceiptKind.READ, (mid(1),), 151.0)
    assert store.commit_receipt(2, ALICE2, read, 151.5) == []
    assert store.statuses(mid(1)) == {}
    copy(store, 3, 1)
    statuses = {d: s.status for d, s in store.statuses(mid(1)).items()}
    assert statuses == {ALICE1: Status.DELIVERED, ALICE2: Status.READ}
    points = [t.point for t in store.trace(mid(1))]
    assert "delivered:alice.1" in points and "read:alice.2" in points
    copy_again = store.commit_receipt(4, ALICE1, delivered, 152.0)  # applied once only
    assert copy_again == []


def test_a_receipt_for_a_copy_already_here_moves_at_once(store: ClientStore) -> None:
    copy(store, 1, 1)
    receipt = Receipt(ReceiptKind.DELIVERED, (mid(1),), 150.0)
    assert store.commit_receipt(2, ALICE1, receipt, 150.5) == [mid(1)]


def test_early_receipts_are_bounded(store: ClientStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_incoming, "MAX_EARLY_RECEIPTS", 3)
    for n in range(1, 6):
        store.commit_receipt(n, ALICE1, Receipt(ReceiptKind.DELIVERED, (mid(n),), 1.0), 2.0)
    rows = store._read("SELECT message_id FROM early_receipts ORDER BY id")
    assert [bytes(r[0]) for r in rows] == [mid(3), mid(4), mid(5)]  # the oldest went first
