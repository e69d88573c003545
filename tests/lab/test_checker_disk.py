"""The checker's full-disk rules (:mod:`tidings.lab.checker_disk`) on doctored ``disk-full`` runs:
a relay that acks what it did not commit, a device that hides its full disk, a "not sent" that
was queued after all, a full disk that refused nothing, a stored message lost after the fill.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.record import Fault, SendFailed, SendRefused, StorageFailedLine


class DiskRun:
    """alice.1 and bob.1; the relay's disk is full over [110, 120], bob.1's over [112, 118]."""

    def __init__(self, tmp_path: Path) -> None:
        self.r = FakeRun(tmp_path, "disk-full")
        for label in ("alice.1", "bob.1"):
            self.r.device(label)
        self.committed: list[tuple[str, bytes]] = []  #: what the relay's sent table holds
        self.r.record.write(Fault(120.0, "disk_full", "server", 110.0, 120.0, {}))
        self.r.record.write(Fault(118.0, "disk_full", "bob.1", 112.0, 118.0, {}))

    def sent(self, sender: str, to: str, at: float, *, committed: bool = True) -> bytes:
        mid = self.r.send(sender, to, at)
        self.r.ack(sender, mid, at + 0.2)
        if committed:
            self.committed.append((sender, mid))
        return mid

    def clean(self) -> None:
        """A run that handled both full disks honestly."""
        before = self.sent("alice.1", "bob", 101.0)  # stored before the fill
        self.r.deliver_all("alice.1", before, 101.5)
        refused = self.r.send("alice.1", "bob", 111.0)  # refused while the relay is full
        self.r.events["alice.1"].write(SendRefused(111.1, refused.hex(), "STORE_UNAVAILABLE"))
        self.r.events["bob.1"].write(StorageFailedLine(113.0, "full", "disk full; stopped"))
        self.r.events["bob.1"].write(SendFailed(113.0, "alice", "tdlab-7-bob.1-9-x", "full"))
        self.r.ack("alice.1", refused, 125.0)  # retried once the relay had room
        self.committed.append(("alice.1", refused))
        self.r.deliver_all("alice.1", refused, 126.0)
        after = self.sent("bob.1", "alice", 127.0)  # bob.1 re-sends once it has room
        self.r.deliver_all("bob.1", after, 127.5)

    def finish(self) -> Path:
        run_dir = self.r.finish()
        db_path = self.r.data_dir / "relay.db"
        db_path.unlink()
        db = sqlite3.connect(db_path)
        db.execute(
            "CREATE TABLE sent (sender_account TEXT, sender_device INTEGER, id_key BLOB,"
            " stored_at REAL, expires_at REAL)"
        )
        for sender, mid in self.committed:
            account, _, device = sender.rpartition(".")
            db.execute(  # the relay's key: the id's last 6 bytes first
                "INSERT INTO sent VALUES (?, ?, ?, 0, 0)",
                (account, int(device), mid[-6:] + mid[:-6]),
            )
        db.commit()
        db.close()
        return run_dir


@pytest.fixture
def disk(tmp_path: Path) -> DiskRun:
    return DiskRun(tmp_path)


def _kinds(run_dir: Path) -> set[str]:
    return {v.kind for v in check(run_dir).violations}


def test_an_honest_full_disk_run_passes(disk: DiskRun) -> None:
    disk.clean()
    result = check(disk.finish())
    assert result.ok, format_violations(result)


def test_a_check_mark_the_relay_never_committed_is_ack_not_stored(disk: DiskRun) -> None:
    disk.clean()
    false = disk.sent("alice.1", "bob", 114.0, committed=False)  # ✓ while the disk was full
    disk.r.deliver_all("alice.1", false, 115.0)
    result = check(disk.finish())
    (v,) = result.violations
    assert (v.kind, v.message_id_hex, v.device) == ("ack_not_stored", false.hex(), "alice.1")
    assert "false ✓" in v.detail


def test_a_full_home_the_device_never_reported_is_failure_hidden(disk: DiskRun) -> None:
    before = disk.sent("alice.1", "bob", 101.0)
    disk.r.deliver_all("alice.1", before, 101.5)
    disk.r.events["alice.1"].write(SendRefused(111.0, before.hex(), "STORE_UNAVAILABLE"))
    disk.r.events["bob.1"].write(StorageFailedLine(119.5, "full", "too late: after the window"))
    result = check(disk.finish())
    (v,) = result.violations
    assert (v.kind, v.device) == ("failure_hidden", "bob.1")


def test_a_not_sent_that_was_queued_after_all_is_refused_but_queued(disk: DiskRun) -> None:
    disk.clean()
    body = "tdlab-7-bob.1-9-x"
    for n, at in enumerate((113.0, 127.0)):  # the "failed" compose was stored, and the re-send
        mid = (1000 + n).to_bytes(16, "big")
        disk.r.stores["bob.1"].compose(mid, "alice", "alice:bob", body.encode(), at)
        disk.committed.append(("bob.1", mid))
        disk.r.ack("bob.1", mid, at + 0.2)
        disk.r.deliver_all("bob.1", mid, at + 0.5)
    result = check(disk.finish())
    assert {v.kind for v in result.violations} == {"refused_but_queued"}, format_violations(result)


def test_a_full_relay_disk_that_refused_nothing_is_unfelt(disk: DiskRun) -> None:
    mid = disk.sent("alice.1", "bob", 111.0)  # ✓ at once: the disk was not really full
    disk.r.deliver_all("alice.1", mid, 111.5)
    disk.r.events["bob.1"].write(StorageFailedLine(113.0, "full", "disk full; stopped"))
    assert _kinds(disk.finish()) == {"disk_full_unfelt"}


def test_a_message_stored_before_the_fill_and_never_delivered_is_lost(disk: DiskRun) -> None:
    disk.clean()
    stored = disk.sent("bob.1", "alice", 105.0)  # ✓ before the fill, then lost by the relay
    result = check(disk.finish())
    lost = [v for v in result.violations if v.kind == "lost"]
    assert [(v.message_id_hex, v.device) for v in lost] == [(stored.hex(), "alice.1")]
    assert "a false ✓" in lost[0].detail
    assert {v.kind for v in result.violations} == {"lost", "skipped"}  # alice.1 holds later ones


def test_the_rules_apply_only_to_runs_with_a_full_disk(tmp_path: Path) -> None:
    r = FakeRun(tmp_path, "clean")  # its relay.db is not a database: never opened
    r.device("alice.1")
    r.device("bob.1")
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver_all("alice.1", mid, 101.5)
    result = check(r.finish())
    assert result.ok, format_violations(result)
