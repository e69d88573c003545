"""``tidings server --store postgresql://…`` as a real process (DESIGN §6, G1): two clients
exchange messages through it, it is SIGKILLed with acked messages still queued, and the
restarted relay delivers every one of them, exactly once and in order, from PostgreSQL.

The database is created for the test and dropped after it (``tests/pgdb.py``: the test skips
without a PostgreSQL server, and fails instead with ``TIDINGS_REQUIRE_POSTGRES=1``, as in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgdb

from .checks import check_exactly_once, sender_messages, setup, wait_all_succeed
from .harness import world

pytestmark = [pytest.mark.proc, pytest.mark.slow]


@pytest.fixture
def database() -> Iterator[str]:
    name = pgdb.create_database_sync("tidings_proc")
    try:
        yield pgdb.url_of(name)
    finally:
        pgdb.drop_database_sync(name)


def test_acked_messages_survive_kill9_of_a_relay_on_postgres(tmp_path: Path, database: str) -> None:
    with world(tmp_path, store=database) as w:
        alice, bob = setup(w)
        # Online: a message goes through the relay and arrives.
        sender = w.driver("sender", alice, "send", "--to", "bob", "--count", "3")
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", "3")
        wait_all_succeed([sender, receiver], "online exchange")
        # Offline receiver: 20 more are acked ✓ (committed in PostgreSQL) and queued there.
        sender = w.driver("sender", alice, "send", "--to", "bob", "--count", "20")
        wait_all_succeed([sender], "20 sends acked")
        acked = set(sender.values("sent"))
        assert len(acked) == 20
        w.kill_server()  # kill -9: nothing is flushed on the way out
        w.start_server()  # same port and database
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", "23")
        wait_all_succeed([receiver], "catch-up after the restart")
        assert not (w.data_dir / "relay.db").exists()  # the data dir holds only the key
    out = sender_messages(alice)
    assert len(out) == 23
    assert acked <= {m.message_id.hex() for m in out}
    check_exactly_once(bob, out, [receiver], "postgres kill -9")
