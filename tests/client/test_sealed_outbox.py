"""Sealed sends from the outbox (docs/protocol.md §14.2) with real clients and a real relay for
the authenticated side; the unidentified side is the test (:class:`FakeUnidentified`: the
relay of this tree does not store sealed sends yet), except in the last test, where the real
relay refuses them and the client falls back."""

from __future__ import annotations

from pathlib import Path

from tests.client.sealed_fakes import TRUST_ROOT, FakeCredentials, FakeUnidentified
from tests.harness import ClientLab, Peer, RelayLab, is_received, is_status
from tidings.client.events import MessageReceived
from tidings.delivery import ContentKind, Status, direct_conversation
from tidings.e2e.sealed_payload import open_payload
from tidings.errors import RelayUnreachable
from tidings.net.ws import ChannelConnection
from tidings.refs import DeviceRef
from tidings.wire import ErrorCode, SealedSend, SealedSent, TagStatus
from tidings.wire.sealed import TagState

BOB1 = DeviceRef("bob", 1)


async def sealed_peer(
    clients: ClientLab,
    home: Path,
    to: str = "bob",
    hold: frozenset[ContentKind] = frozenset({ContentKind.MESSAGE}),
) -> tuple[Peer, FakeCredentials, FakeUnidentified]:
    """Start the device of ``home`` sending sealed to ``to`` through a fake unidentified side,
    which stores the sealed sends at once but those of ``hold`` kinds: the test answers."""
    peer = await clients.start(home, connect=False)
    c = peer.client
    creds = FakeCredentials(c.me.account, c.me.device_id, c.crypto.keys.identity)
    creds.keys[to] = b"B" * 16
    c.sealed_credentials = creds
    fake = FakeUnidentified()
    c.unidentified.opener = fake
    fake.auto = lambda s: kind_of(peer, s) not in hold
    await c.wait_connected()
    return peer, creds, fake


def kind_of(peer: Peer, s: SealedSend) -> ContentKind | None:
    """The content kind of the outbox entry a sealed send is of."""
    store = peer.client.store
    mid = next((m for m, r in store.sealed_records().items() if r.tag == s.tag), None)
    item = None if mid is None else store.outbox_item(mid)
    return None if item is None else item.kind


def mine(fake: FakeUnidentified, peer: Peer, mid: bytes) -> list[SealedSend]:
    """The sealed sends of entry ``mid``."""
    record = peer.client.store.sealed_record(mid)
    return [] if record is None else [s for s in fake.sealed() if s.tag == record.tag]


def ok(s: SealedSend, duplicate: bool = False) -> SealedSent:
    return SealedSent(s.tag, s.recipient, 0, 1000.0, duplicate, "", 0.0)


def points(peer: Peer, mid: bytes) -> list[str]:
    return [p.point for p in peer.client.trace(mid) if p.point != "tcp_acked"]


async def test_a_message_goes_sealed_and_is_sent_once_the_relay_stored_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob = await clients.new("bob")
    alice, _, fake = await sealed_peer(clients, await clients.register("alice"))

    mid = await alice.client.send("bob", "sealed hello")
    await fake.wait(lambda: mine(fake, alice, mid))
    s = mine(fake, alice, mid)[0]
    assert (s.recipient, s.access_key, [d.device_id for d in s.devices]) == ("bob", b"B" * 16, [1])
    # bob's device opens it: from alice.1, the message id inside
    opened = open_payload(
        s.devices[0].payload, bob.client.crypto.keys.identity, TRUST_ROOT.public, 2_000_000_000_000
    )
    assert (opened.account, opened.device, opened.message_id) == ("alice", 1, mid)
    assert alice.client.status(mid) is Status.PENDING  # no ✓ before SEALED_SENT

    fake.conn.answer(ok(s))
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert points(alice, mid) == ["composed", "sealed", "written", "sealed_stored", "sent"]
    sealed = next(p for p in alice.client.trace(mid) if p.point == "sealed")
    assert sealed.detail is not None and sealed.detail.startswith("to bob: 1 device(s), tag ")
    assert bob.client.store.message(mid) is None  # nothing went by SEND
    # ✗ without the sender's identity: asked about at once, EXPIRED is the message's ✗
    alice.client._ask_tags()
    await fake.wait(lambda: fake.queries())
    q = fake.queries()[-1]
    assert q.tags == (s.tag,)
    fake.conn.answer(TagStatus(q.request_id, ((s.tag, int(TagState.EXPIRED)),)))
    await alice.until(is_status(mid, Status.EXPIRED, BOB1))
    assert alice.client.status(mid) is Status.EXPIRED
    assert alice.client.store.tags_to_ask(10) == []  # forgotten


async def test_own_copies_go_by_send_after_the_sealed_send_is_stored(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    await clients.new("bob")
    alice1 = await clients.new("alice")
    alice2 = await clients.link(alice1)
    await alice1.client.close()
    alice, _, fake = await sealed_peer(clients, alice1.home)

    mid = await alice.client.send("bob", "with a copy")
    await fake.wait(lambda: mine(fake, alice, mid))
    s = mine(fake, alice, mid)[0]
    assert [d.device_id for d in s.devices] == [1]  # bob's only
    fake.conn.answer(ok(s))
    copy = await alice2.until(is_received(mid))  # the own copy: a normal SEND, same id
    assert isinstance(copy, MessageReceived) and copy.message.recipient == "bob"
    await alice.until(is_status(mid, Status.SENT, BOB1))
    # a delivered tag is forgotten
    alice.client._ask_tags()
    await fake.wait(lambda: fake.queries())
    q = fake.queries()[-1]
    fake.conn.answer(TagStatus(q.request_id, ((q.tags[0], int(TagState.DELIVERED)),)))
    assert alice.client.store.tags_to_ask(10) == []


async def test_access_denied_forgets_the_key_and_sends_it_unsealed_once(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob = await clients.new("bob")
    alice, creds, fake = await sealed_peer(clients, await clients.register("alice"))

    mid = await alice.client.send("bob", "rotated key")
    await fake.wait(lambda: mine(fake, alice, mid))
    s = mine(fake, alice, mid)[0]
    denied = SealedSent(s.tag, "bob", int(ErrorCode.ACCESS_DENIED), 0.0, False, "wrong key", 0.0)
    fake.conn.answer(denied)
    got = await bob.until(is_received(mid))  # by a normal SEND, same message id
    assert isinstance(got, MessageReceived) and got.message.sender == DeviceRef("alice", 1)
    await alice.until(is_status(mid, Status.DELIVERED, BOB1))
    assert creds.forgotten == ["bob"]
    trace = alice.client.trace(mid)
    unsealed = next(p for p in trace if p.point == "unsealed")
    assert unsealed.detail == "ACCESS_DENIED: wrong key"
    assert [x for x in fake.sealed() if x.tag == s.tag] == [s]  # not sealed again
    assert [
        m.message_id for m in bob.client.store.messages(direct_conversation("alice", "bob"))
    ].count(mid) == 1


async def test_receipts_go_sealed_too(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob, _, fake = await sealed_peer(
        clients, await clients.register("bob"), to="alice", hold=frozenset({ContentKind.RECEIPT})
    )
    mid = await alice.client.send("bob", "receipt me")
    await bob.until(is_received(mid))

    def receipts() -> list[SealedSend]:
        return [s for s in fake.sealed() if kind_of(bob, s) == ContentKind.RECEIPT]

    await fake.wait(receipts)  # bob's delivered receipt, sealed to alice
    s = receipts()[0]
    assert s.recipient == "alice"
    opened = open_payload(
        s.devices[0].payload, alice.client.crypto.keys.identity, TRUST_ROOT.public, 2 * 10**12
    )
    assert (opened.account, opened.device) == ("bob", 1)
    fake.conn.answer(ok(s))
    assert await bob.client.drain(5.0)  # the receipt is ✓ and leaves the outbox
    assert bob.client.store.tags_to_ask(10) == []  # no status to ask about for a receipt


async def test_a_retry_after_a_restart_before_sealed_sent_reuses_the_tag(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    await clients.new("bob")
    home = await clients.register("alice")
    alice, _, fake = await sealed_peer(clients, home)
    mid = await alice.client.send("bob", "survives a restart")
    await fake.wait(lambda: mine(fake, alice, mid))
    tag = mine(fake, alice, mid)[0].tag
    await alice.client.close()  # no answer came

    alice, _, fake2 = await sealed_peer(clients, home)
    await fake2.wait(lambda: mine(fake2, alice, mid))
    assert mine(fake2, alice, mid)[0].tag == tag  # the relay stores (bob, tag) once
    fake2.conn.answer(ok(mine(fake2, alice, mid)[0], duplicate=True))
    await alice.until(is_status(mid, Status.SENT, BOB1))


async def test_a_device_mismatch_refreshes_and_reseals_with_the_same_tag(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob1 = await clients.new("bob")
    alice, _, fake = await sealed_peer(clients, await clients.register("alice"))
    first = await alice.client.send("bob", "to bob.1")
    await fake.wait(lambda: mine(fake, alice, first))
    fake.conn.answer(ok(mine(fake, alice, first)[0]))
    await alice.until(is_status(first, Status.SENT, BOB1))
    await clients.link(bob1)  # bob.2, which alice does not know of

    second = await alice.client.send("bob", "to both")
    await fake.wait(lambda: mine(fake, alice, second))
    s = mine(fake, alice, second)[0]
    assert [d.device_id for d in s.devices] == [1]
    mismatch = SealedSent(
        s.tag, "bob", int(ErrorCode.DEVICE_MISMATCH), 0.0, False, "devices", 0.0, (2,), ()
    )
    fake.conn.answer(mismatch)  # the session with bob.2 is fetched, the message resealed
    await fake.wait(lambda: len(mine(fake, alice, second)) == 2)
    again = mine(fake, alice, second)[1]
    assert again.tag == s.tag and [d.device_id for d in again.devices] == [1, 2]
    fake.conn.answer(ok(again))
    await alice.until(is_status(second, Status.SENT, DeviceRef("bob", 2)))


async def test_a_relay_that_refuses_sealed_sends_gets_the_message_unsealed(
    relays: RelayLab, clients: ClientLab
) -> None:
    """End to end with the real relay and a real NK connection: it closes the unidentified
    session on SEALED_SEND (not accepted yet) or refuses the test's access key; either way
    the message goes by SEND, is delivered once, and the trace says why."""
    await relays.start()
    bob = await clients.new("bob")
    peer = await clients.start(await clients.register("alice"), connect=False)
    c = peer.client
    creds = FakeCredentials("alice", 1, c.crypto.keys.identity)
    creds.keys["bob"] = b"B" * 16
    c.sealed_credentials = creds
    await c.wait_connected()
    mid = await c.send("bob", "through the real relay")
    await bob.until(is_received(mid))
    await peer.until(is_status(mid, Status.DELIVERED, BOB1))
    unsealed = next(p for p in c.trace(mid) if p.point == "unsealed")
    assert unsealed.detail is not None
    assert "does not accept sealed sends" in unsealed.detail or "ACCESS_DENIED" in unsealed.detail
    assert [
        m.message_id for m in bob.client.store.messages(direct_conversation("alice", "bob"))
    ].count(mid) == 1


async def test_an_entry_whose_certificate_ran_out_before_a_retry_falls_back(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob = await clients.new("bob")
    alice, creds, fake = await sealed_peer(clients, await clients.register("alice"))
    mid = await alice.client.send("bob", "late")
    await fake.wait(lambda: mine(fake, alice, mid))  # no answer comes
    creds.expires = 0.0  # no valid certificate any more
    alice.client._session.drop()  # the session is lost: the entry goes again
    got = await bob.until(is_received(mid))
    assert isinstance(got, MessageReceived)
    unsealed = next(p for p in alice.client.trace(mid) if p.point == "unsealed")
    assert unsealed.detail == "no valid sender certificate"
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert alice.client.store.sealed_record(mid) is None  # gone with the entry


async def test_no_unidentified_connection_means_the_message_goes_unsealed(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob = await clients.new("bob")
    alice, _, _ = await sealed_peer(clients, await clients.register("alice"))

    async def blocked(url: str, handler: object, key: bytes) -> ChannelConnection:
        raise RelayUnreachable(url, "a second connection is blocked")

    alice.client.unidentified.opener = blocked
    mid = await alice.client.send("bob", "through anyway")
    await bob.until(is_received(mid))
    await alice.until(is_status(mid, Status.DELIVERED, BOB1))
    unsealed = next(p for p in alice.client.trace(mid) if p.point == "unsealed")
    assert unsealed.detail == "no unidentified connection after 3 attempts"
    assert alice.client.connected  # the authenticated session never noticed
