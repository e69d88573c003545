"""Two relay nodes on one PostgreSQL database, a device that knows both URLs (issue 14): the
node it is on is killed with ``kill -9`` while messages for it wait in the database; it moves
to the other node by itself and receives every one, exactly once and in order, from its cursor.

The test does not depend on cross-node wake-ups: the sender is on the surviving node, so what
it sends before the kill waits in PostgreSQL for the receiver's catch-up on its next connection
(wherever the receiver is), and what it sends after is delivered live on the same node. The
database is created for the test and dropped after it (``tests/pgdb.py``: skipped without a
server, failed instead with ``TIDINGS_REQUIRE_POSTGRES=1``). No sleeps: every wait is on a line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgdb
from tidings.client import register

from .checks import check_exactly_once, has, sender_messages, wait_all_succeed
from .harness import WAIT, wait_for, world
from .nodes import Nodes

pytestmark = [pytest.mark.proc, pytest.mark.slow]


@pytest.fixture
def database() -> Iterator[str]:
    name = pgdb.create_database_sync("tidings_nodes")
    try:
        yield pgdb.url_of(name)
    finally:
        pgdb.drop_database_sync(name)


def test_a_device_moves_to_the_other_node_after_kill9_and_misses_nothing(
    tmp_path: Path, database: str
) -> None:
    with world(tmp_path, store=database) as w:
        nodes = Nodes(w, 2, database)
        nodes.start(0)
        nodes.start(1)
        assert nodes.key(0) == nodes.key(1)  # one relay: its key on every node
        alice, bob = tmp_path / "alice", tmp_path / "bob"
        asyncio.run(register(alice, [nodes.url(1)], "alice"))  # the sender: on the survivor
        asyncio.run(register(bob, nodes.urls, "bob"))  # node 0 preferred, node 1 next

        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", "8")
        wait_for([receiver], has(receiver, "connected", 1), WAIT, "bob on node 0")
        assert receiver.values("url") == [nodes.url(0)]
        # 5 acked ✓ (committed in PostgreSQL) while bob is on the other node.
        sender = w.driver("sender", alice, "send", "--to", "bob", "--count", "5", "--prefix", "a")
        wait_all_succeed([sender], "5 sends acked on node 1")
        acked = set(sender.values("sent"))
        assert len(acked) == 5

        nodes.kill(0)  # the node bob is on: kill -9
        wait_for([receiver], has(receiver, "connected", 2), WAIT, "bob on node 1")
        assert receiver.values("url") == [nodes.url(0), nodes.url(1)]
        # 3 more while bob is on node 1 with alice: delivered live there.
        more = w.driver("sender", alice, "send", "--to", "bob", "--count", "3", "--prefix", "b")
        wait_all_succeed([more, receiver], "catch-up and live on node 1")
    out = sender_messages(alice)
    assert len(out) == 8 and acked <= {m.message_id.hex() for m in out}
    check_exactly_once(bob, out, [receiver], "two nodes, kill -9 of the receiver's")
