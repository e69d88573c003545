"""What the real-process tests share: the seed of their random kill points, the two-account
world they start from, and the end-of-test checks read from the stores themselves.

The kill points come from ``random.Random(f"{SEED}-{test}")``; set ``TIDINGS_PROC_SEED`` to
replay or vary them. Every check names the seed in its failure message.
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Direction, StoredMessage
from tidings.delivery import Status, direct_conversation

from .harness import WAIT, Proc, World, wait_for

SEED = int(os.environ.get("TIDINGS_PROC_SEED", "20261126"))

CONV = direct_conversation("alice", "bob")

#: Statuses that mean the relay stored the message (✓ or further).
STORED = {Status.SENT, Status.DELIVERED, Status.READ}


def rng_for(test: str) -> random.Random:
    return random.Random(f"{SEED}-{test}")


def setup(w: World) -> tuple[Path, Path]:
    w.start_server()
    return w.register("alice"), w.register("bob")


def has(proc: Proc, key: str, n: int) -> Callable[[], bool]:
    """A condition for :func:`wait_for`: ``proc`` printed at least ``n`` lines with ``key``."""
    return lambda: proc.count(key) >= n


def wait_all_succeed(procs: Sequence[Proc], note: str) -> None:
    """Wait until every process exited 0 (reading all of them meanwhile). Fail as soon as one
    exits otherwise (a driver that crashed or timed out), with every process's stderr tail."""

    def failed() -> list[Proc]:
        # After EOF on its stdout a driver is exiting: the wait is immediate.
        return [p for p in procs if p.eof and p.popen.wait(WAIT) != 0]

    def done() -> bool:
        return all(p.eof for p in procs) or bool(failed())

    names = ", ".join(p.name for p in procs)
    wait_for(procs, done, WAIT * 2, f"{names} to finish ({note})")
    bad = ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in failed())
    details = "\n".join(p.describe() for p in procs)
    assert not bad, f"{bad} failed ({note})\n{details}"


def sender_messages(home: Path) -> list[StoredMessage]:
    """What the sender composed, in composition order, after checking that all have their ✓."""
    with ClientStore(home / DB_NAME) as store:
        assert store.pending() == [], "the outbox must be empty"
        out = [m for m in store.messages(CONV, limit=10**9) if m.direction is Direction.OUT]
        statuses = {m.message_id: store.message_status(m.message_id) for m in out}
    assert all(s in STORED for s in statuses.values()), statuses
    assert all(m.stored_at is not None for m in out)
    # compose() allocates counters in its own transaction: a crash neither skips nor reuses one.
    assert [m.counter for m in out] == list(range(1, len(out) + 1))
    return out


def check_exactly_once(
    home: Path, expected: Sequence[StoredMessage], receivers: Sequence[Proc], seed_note: str
) -> None:
    """The receiver's store holds each expected message once, shown in the sender's order, and
    no receiver process displayed a message twice."""
    with ClientStore(home / DB_NAME) as store:
        shown = [m for m in store.messages(CONV, limit=10**9) if m.direction is Direction.IN]
        held = store.unsurfaced()
    ids = [m.message_id for m in shown]
    dups = [i.hex() for i, c in collections.Counter(ids).items() if c > 1]
    assert not dups, f"duplicates in the receiver's store: {dups} ({seed_note})"
    assert held == [], f"messages held behind a gap: {held} ({seed_note})"
    want = [m.message_id for m in expected]
    missing = {i.hex() for i in want} - {i.hex() for i in ids}
    assert not missing, f"{len(missing)} messages never arrived ({seed_note}): {sorted(missing)}"
    assert ids == want, f"the receiver shows them in another order ({seed_note})"
    assert [m.counter for m in shown] == list(range(1, len(want) + 1))
    assert [m.body for m in shown] == [m.body for m in expected]
    printed: list[str] = []
    for p in receivers:
        lines = [line for line in p.lines if "received" in line]
        counters = [line["counter"] for line in lines]
        assert counters == sorted(set(counters)), f"{p.name} displayed out of order"
        assert not any(line["late"] for line in lines), f"{p.name} skipped a gap"
        printed += [line["received"] for line in lines]
    twice = [i for i, c in collections.Counter(printed).items() if c > 1]
    assert not twice, f"displayed twice across receiver runs: {twice} ({seed_note})"
    assert set(printed) <= {i.hex() for i in ids}
