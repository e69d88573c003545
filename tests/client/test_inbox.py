"""The client's inbox and the relay's notices that a message for it expired unfetched.

The relay of issue 8 queues, for each item of a device that expired unfetched, a DELIVER with
kind 2 naming the message's sender device and id, after every item queued before the expiry.
This worktree's relay does not make them yet, so the test plays the relay: real alice messages
go through a real relay to bob's inbox there, and the test hands bob's client those items, as
DELIVER frames, in the order the new relay would, with the notices in between. Bob's client is
not connected (no ACK goes anywhere); its events are what a user would see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness import ClientLab, FakeClock, RelayLab, is_status
from tidings.client import Client, GapDetected, GapSkipped, MessageReceived
from tidings.client.core import State
from tidings.client.events import ClientEvent
from tidings.delivery import Status
from tidings.delivery.ordering import SkipReason
from tidings.net.channel import FrameReceived
from tidings.store import DeviceRef
from tidings.store.base import InboxItem
from tidings.wire import Deliver, Welcome

BOB1 = DeviceRef("bob", 1)
ALICE1 = DeviceRef("alice", 1)


class ScriptedRelay:
    """Hands DELIVER frames to a client that is not connected, with seqs of its own."""

    def __init__(self, items: list[InboxItem]) -> None:
        self.items = {item.message_id: item for item in items}
        self.seq = 0

    def message(self, client: Client, mid: bytes) -> None:
        item = self.items[mid]
        s = item.sender
        self._deliver(
            client,
            Deliver(self._next(), 0, s.account, s.device_id, mid, 1.0, 2.0, item.payload),
        )

    def expired(self, client: Client, mid: bytes, sender: DeviceRef = ALICE1) -> None:
        frame = Deliver(self._next(), 2, sender.account, sender.device_id, mid, 3.0, 4.0, b"")
        self._deliver(client, frame)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _deliver(self, client: Client, frame: Deliver) -> None:
        attach(client)
        client._session.on_channel_event(None, FrameReceived(frame))  # type: ignore[arg-type]
        client.settle()  # commit the batch: its events are reported now


class WireTap:
    """Stands for the connection: keeps the frames the session writes."""

    def __init__(self) -> None:
        self.frames: list[object] = []

    def send_frame(self, frame: object) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass


def attach(client: Client) -> WireTap:
    """Put a client that is not started on a session of its own connection core, as after
    HELLO and WELCOME (DELIVERs flow), with no network: the frames it writes are kept."""
    session = client._session
    if isinstance(session._conn, WireTap):
        return session._conn
    core = session.core
    core.state = State.CONNECTING  # as after start(): the connection is being opened
    core.handshake_done(core.pinned_key or b"k" * 32, "IK", 0.0)
    core.frame_received(Welcome(client.me.account, client.me.device_id, 0.0, 1.0, 1, 0, 0), 0.0)
    core.actions()  # Connected, and the own-devices request: no owner to tell
    core.frames_to_send()
    tap = WireTap()
    session._conn = tap  # type: ignore[assignment]
    return tap


def drain(events: Any) -> list[ClientEvent]:
    """The events reported so far (they are queued synchronously, after each commit)."""
    out = []
    while not events._queue.empty():
        out.append(events._queue.get_nowait())
    return out


def received(events: list[ClientEvent]) -> list[tuple[int, bool]]:
    return [(e.message.counter, e.late) for e in events if isinstance(e, MessageReceived)]


async def alice_sends(
    relays: RelayLab, clients: ClientLab, n: int
) -> tuple[Path, list[bytes], list[InboxItem]]:
    """alice sends ``n`` messages to bob (offline): their ids, and bob's items on the relay."""
    relay = await relays.start()
    alice = await clients.new("alice")
    bob_home = await clients.register("bob")
    ids = [await alice.client.send("bob", f"m{i}") for i in range(1, n + 1)]
    for mid in ids:
        await alice.until(is_status(mid, Status.SENT))
    items = await relay.store.fetch(BOB1, 0, 100)
    assert [i.message_id for i in items] == ids
    return bob_home, ids, items


async def test_expiry_notices_release_the_held_messages_at_once(
    relays: RelayLab, clients: ClientLab
) -> None:
    """Counters 1 and 4 expire on the relay before bob fetches them. Bob's later messages
    used to wait 30 s behind gaps that can never fill; now each notice releases them at once.
    Bob's monotonic clock never moves: no hold time passes."""
    bob_home, ids, items = await alice_sends(relays, clients, 6)
    relay = ScriptedRelay(items)
    bob = clients.open(bob_home, monotonic=FakeClock(0.0))
    events = bob.events()

    relay.message(bob, ids[1])  # 2 and 3 were queued before 1 expired: they come first
    relay.message(bob, ids[2])
    assert [type(e) for e in drain(events)] == [GapDetected]
    relay.expired(bob, ids[0])
    got = drain(events)
    assert got[0] == GapSkipped("alice:bob", ALICE1, range(1, 2), SkipReason.EXPIRED)
    assert received(got) == [(2, False), (3, False)]

    relay.expired(bob, ids[3])  # 4 expired; 5 was sent after: the notice comes first
    assert drain(events) == []  # kept for alice.1's next gap
    relay.message(bob, ids[4])
    got = drain(events)
    assert [type(e) for e in got] == [GapDetected, GapSkipped, MessageReceived]
    assert got[1] == GapSkipped("alice:bob", ALICE1, range(4, 5), SkipReason.EXPIRED)
    assert received(got) == [(5, False)]

    relay.expired(bob, ids[1])  # a notice for a message bob has: it must skip nothing
    assert drain(events) == []
    assert bob.store.expired_notices() == {}
    relay.message(bob, ids[5])
    assert received(drain(events)) == [(6, False)]
    assert [m.counter for m in bob.store.messages("alice:bob")] == [2, 3, 5, 6]
    assert bob.store.cursor() == relay.seq


async def test_a_kept_notice_survives_a_restart(relays: RelayLab, clients: ClientLab) -> None:
    bob_home, ids, items = await alice_sends(relays, clients, 3)
    relay = ScriptedRelay(items)
    bob = clients.open(bob_home, monotonic=FakeClock(0.0))
    relay.message(bob, ids[0])
    relay.expired(bob, ids[1])  # nothing waits behind 2 yet
    await bob.close()

    bob = clients.open(bob_home, monotonic=FakeClock(0.0))
    events = bob.events()
    relay.message(bob, ids[2])
    got = drain(events)
    assert GapSkipped("alice:bob", ALICE1, range(2, 3), SkipReason.EXPIRED) in got
    assert received(got) == [(3, False)]


async def test_a_duplicate_notice_keeps_a_real_gap_on_hold(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A notice for a message that did arrive (its ack reached the relay after the expiry
    pass) must not declare the next real gap expired."""
    bob_home, ids, items = await alice_sends(relays, clients, 3)
    relay = ScriptedRelay(items)
    bob = clients.open(bob_home, monotonic=FakeClock(0.0))
    events = bob.events()
    relay.message(bob, ids[0])
    relay.expired(bob, ids[0])
    relay.message(bob, ids[2])  # 2 is late, not expired
    assert [type(e) for e in drain(events)] == [MessageReceived, GapDetected]
    relay.message(bob, ids[1])
    assert received(drain(events)) == [(2, False), (3, False)]
