"""Disappearing messages between real clients through a real relay (issue 13): the timer is
agreed between the members, and an expired message is gone from the store and the search
index on every device."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.harness import ClientLab, Peer, RelayLab
from tidings.client import MessagesExpired, TimerChanged
from tidings.client.events import ClientEvent
from tidings.delivery import ContentError


class Shifted:
    """A wall clock ``offset`` seconds from the real one (the monotonic clock stays real, so
    the outbox and reconnect timers run as usual)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def is_timer(seconds: int) -> object:
    def check(e: ClientEvent) -> bool:
        return isinstance(e, TimerChanged) and e.seconds == seconds

    return check


def is_expired(e: ClientEvent) -> bool:
    return isinstance(e, MessagesExpired)


async def until_true(peer: Peer, condition: Callable[[], bool]) -> None:
    """Take ``peer``'s events until ``condition`` holds (it is checked after each)."""
    while not condition():
        await peer.until(lambda e: True)


async def test_a_timer_reaches_the_contact_and_the_own_devices(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    alice2 = await clients.link(alice1)
    bob = await clients.new("bob")
    timer = await alice1.client.set_timer("bob", 3600)
    assert timer.seconds == 3600 and timer.set_by == alice1.me
    for peer in (alice2, bob):
        event = await peer.until(is_timer(3600))  # type: ignore[arg-type]
        assert isinstance(event, TimerChanged) and event.by == alice1.me
        assert event.conversation == "alice:bob" and event.at == timer.set_at
    for peer in (alice1, alice2, bob):
        assert peer.client.timer("alice:bob") == timer
    with pytest.raises(ContentError):
        await alice1.client.set_timer("bob", -5)
    assert alice1.client.timer("alice:bob") == timer  # a refused setting changed nothing


async def test_concurrent_settings_converge_on_the_latest(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob", clock=Shifted(100.0))  # bob's setting is the later one
    await alice.client.set_timer("bob", 60)
    await bob.client.set_timer("alice", 600)  # before or after alice's arrived: either way
    for peer in (alice, bob):
        await peer.client.drain(10.0)
    # each side reaches bob's setting, whatever the order the two crossed in
    await until_true(alice, lambda: _seconds(alice) == 600)
    await until_true(bob, lambda: _seconds(bob) == 600)
    timer = bob.client.timer("alice:bob")
    assert timer is not None and timer.seconds == 600 and timer.set_by == bob.me
    assert alice.client.timer("alice:bob") == timer


async def test_an_expired_message_is_gone_from_every_device(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    clocks = {name: Shifted() for name in ("alice", "bob1", "bob2")}
    alice = await clients.new("alice", clock=clocks["alice"])
    bob1 = await clients.new("bob", clock=clocks["bob1"])
    bob2 = await clients.link(bob1, clock=clocks["bob2"])
    lasting = await alice.client.send("bob", "a lasting rendezvous")
    await alice.client.set_timer("bob", 60)
    for peer in (bob1, bob2):
        await peer.until(is_timer(60))  # type: ignore[arg-type]
    secret = await alice.client.send("bob", "a secret rendezvous")
    peers: list[Peer] = [alice, bob1, bob2]
    for peer in (bob1, bob2):
        await until_true(peer, lambda p=peer: p.client.store.message(secret) is not None)  # type: ignore[misc]
        m = peer.client.store.message(secret)
        assert m is not None and m.expires_in == 60 and m.expires_at is None  # not shown yet
    # bob reads it on bob1: its clock starts there, and on bob2 by read-state sync
    assert bob1.client.mark_seen([lasting, secret]) == 2
    await bob1.client.mark_read([lasting, secret])
    for peer in peers:
        await until_true(peer, lambda p=peer: _started(p, secret))  # type: ignore[misc]
        assert len(peer.client.store.search("rendezvous")) == 2

    for clock in clocks.values():
        clock.offset += 61  # a minute later on every device
    for peer in peers:
        assert peer.client.expire_now() == 1
        event = await peer.until(is_expired)
        assert isinstance(event, MessagesExpired) and event.message_ids == (secret,)
        assert peer.client.store.message(secret) is None
        assert [m.body for m in peer.client.store.search("rendezvous")] == [b"a lasting rendezvous"]
        assert peer.client.store.message(lasting) is not None


def _seconds(peer: Peer) -> int | None:
    timer = peer.client.timer("alice:bob")
    return None if timer is None else timer.seconds


def _started(peer: Peer, message_id: bytes) -> bool:
    m = peer.client.store.message(message_id)
    return m is not None and m.expires_at is not None
