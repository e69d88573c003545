"""History for a newly linked device (issue 13), with real clients and a real relay: the
archive goes end-to-end encrypted through the relay, the new device shows the earlier
conversation before what it got itself, and a part that comes twice adds nothing."""

from __future__ import annotations

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.client import HistoryImported
from tidings.client.events import ClientEvent
from tidings.client.history import history_parts
from tidings.delivery import Status
from tidings.delivery.content_history import HistoryEntry


def is_history(e: ClientEvent) -> bool:
    return isinstance(e, HistoryImported)


async def test_a_new_device_gets_the_earlier_conversation(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    sent = [await alice.client.send("bob", f"earlier {i}") for i in range(30)]
    await bob1.until_all(is_received(), 30)
    await bob1.client.mark_read(sent[:10])
    reply = await bob1.client.send("alice", "an earlier reply")
    await bob1.until(is_status(reply, Status.DELIVERED))
    disappearing = await alice.client.set_timer("bob", 3600)
    assert disappearing.seconds == 3600
    vanishing = await alice.client.send("bob", "not for the archive")
    await bob1.until(is_received(vanishing))

    bob2 = await clients.link(bob1)
    later = await alice.client.send("bob", "after the link")
    await bob2.until(is_received(later))
    last = await bob1.client.send_history(bob2.me.device_id)
    assert last.parts == 1
    event = await bob2.until(is_history)
    assert isinstance(event, HistoryImported)
    assert (event.part, event.parts, event.added, event.sender) == (1, 1, 31, bob1.me)

    shown = bob2.client.store.messages("alice:bob", limit=100)
    bodies = [m.body.decode() for m in shown]
    assert bodies == [*(f"earlier {i}" for i in range(30)), "an earlier reply", "after the link"]
    assert "not for the archive" not in bodies  # disappearing messages stay out of archives
    by_body = {m.body: m for m in shown}
    assert by_body[b"earlier 0"].read_at is not None and by_body[b"earlier 20"].read_at is None
    assert by_body[b"an earlier reply"].recipient == "alice"  # filed as sent by bob.1
    # dated when it was said (as bob.1 had it), not when bob.2 imported it
    originals = {m.body: m for m in bob1.client.store.messages("alice:bob", limit=100)}
    for body in (b"earlier 0", b"earlier 29", b"an earlier reply"):
        assert by_body[body].received_at == by_body[body].sent_at == originals[body].sent_at
    # history is not news: only what bob.2 received itself waits to be shown
    assert [m.body for m in bob2.client.unseen()] == [b"after the link"]
    assert len(bob2.client.store.search("earlier")) == 31
    # bob's other devices got the ciphertext too, and took nothing from it
    assert not any(isinstance(e, HistoryImported) for e in bob1.seen)


def test_parts_are_cut_by_size_newest_first() -> None:
    entry = HistoryEntry(bytes(16), "bob", 1, "alice:bob", 1, 1.0, b"x" * 20_000, None, True)
    entries = [
        HistoryEntry(n.to_bytes(16, "big"), *[*entry.fields()[1:4], n + 1, *entry.fields()[5:]])
        for n in range(7)
    ]
    parts = history_parts(2, bytes(16), entries)
    assert [len(p.entries) for p in parts] == [3, 3, 1]
    assert [p.part for p in parts] == [1, 2, 3] and {p.parts for p in parts} == {3}
    assert [e.counter for p in parts for e in p.entries] == list(range(1, 8))  # order kept
    assert history_parts(2, bytes(16), [])[0].entries == ()


def test_a_part_delivered_twice_adds_nothing(tmp_path: object) -> None:
    from pathlib import Path

    from tidings.client.store import ClientStore, Identity

    path = Path(str(tmp_path)) / "client.db"
    with ClientStore(path) as store:
        store.save_identity(Identity(bytes(32), "bob", 2, "tablet", "ws://relay.example:1"))
        entries = tuple(
            HistoryEntry(
                n.to_bytes(16, "big"), "alice", 1, "alice:bob", n, float(n), b"m", None, False
            )
            for n in (3, 2, 1)  # newest first
        )
        assert store.commit_history(1, entries, 10.0) == 3
        assert store.commit_history(2, entries, 11.0) == 0  # the same part again (resent)
        assert store.commit_history(2, entries, 12.0) == 0  # the same item again (no ack)
        shown = store.messages("alice:bob")
        assert [m.counter for m in shown] == [1, 2, 3]  # oldest first, as a conversation shows
        assert store.cursor() == 2
