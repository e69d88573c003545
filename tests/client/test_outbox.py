"""The client's outbox against a real relay: refusals are reported and traced, delays run on the
monotonic clock.

Clients get a fake wall clock and a fake monotonic clock (``FakeClock``) and a fixed jitter
(``FixedRandom(0.0)``: a retry waits exactly the relay's ``retry_after``). Nothing sleeps: a
retry is due when the test moves the monotonic clock, and the next ``send`` pumps the outbox.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.harness import (
    ClientLab,
    FakeClock,
    FixedRandom,
    Peer,
    RelayLab,
    is_status,
)
from tidings.client import SendRefused
from tidings.delivery import RETRY_CAP, ContentKind, Status
from tidings.wire import ErrorCode

WALL = 1_800_000_000.0
HOUR = 3600.0


def refused(mid: bytes | None = None) -> Callable[[object], bool]:
    """Predicate: a SendRefused (of ``mid``, if given)."""
    return lambda e: isinstance(e, SendRefused) and (mid is None or e.message_id == mid)


async def alice_with_clocks(
    clients: ClientLab, wall: FakeClock, mono: FakeClock, home: object = None
) -> Peer:
    if home is None:
        return await clients.new("alice", clock=wall, monotonic=mono, rng=FixedRandom(0.0))
    return await clients.start(home, clock=wall, monotonic=mono, rng=FixedRandom(0.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- refusals


async def test_a_full_queue_is_reported_with_its_retry_time_and_traced(
    relays: RelayLab, clients: ClientLab
) -> None:
    """QUEUE_FULL used to leave the message at … with no event and nothing in its trace."""
    relay = await relays.start(max_queue=1)
    wall, mono = FakeClock(WALL), FakeClock(0.0)
    alice = await alice_with_clocks(clients, wall, mono)
    await clients.register("bob")  # bob stays offline: his queue fills

    first = await alice.client.send("bob", "fills bob's queue")
    await alice.until(is_status(first, Status.SENT))
    mid = await alice.client.send("bob", "waits")
    event = await alice.until(refused(mid))

    assert isinstance(event, SendRefused)
    assert (event.recipient, event.kind, event.code) == ("bob", ContentKind.MESSAGE, 10)
    assert event.code_name == "QUEUE_FULL" and "bob.1" in event.reason
    assert (event.at, event.retry_at, event.final) == (WALL, WALL + 5.0, False)
    assert relay.refusals == [ErrorCode.QUEUE_FULL]
    assert alice.client.status(mid) is Status.PENDING  # still in the outbox
    [entry] = [e for e in alice.client.store.pending() if e.message_id == mid]
    assert (entry.attempts, entry.next_attempt_at) == (1, WALL + 5.0)  # stored: wall clock
    trace = [(p.point, p.detail) for p in alice.client.trace(mid) if p.point != "tcp_acked"]
    assert trace == [
        ("composed", None),
        ("written", None),  # committed with the refusal, not lost until a ✓
        ("refused:QUEUE_FULL", f"{event.reason}; retry in 5.0 s"),
    ]


async def test_a_final_refusal_is_reported_before_the_failure(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start(max_payload=2400)  # a sealed short message fits, a 1 KB body does not
    alice = await clients.new("alice")
    await clients.register("bob")

    mid = await alice.client.send("bob", b"x" * 1000)
    await alice.until(is_status(mid, Status.FAILED))
    [event] = [e for e in alice.seen if isinstance(e, SendRefused)]
    assert (event.message_id, event.code_name, event.final) == (mid, "PAYLOAD_TOO_LARGE", True)
    assert event.retry_at is None
    assert alice.seen.index(event) < len(alice.seen) - 1  # the StatusChanged FAILED follows
    points = [p.point for p in alice.client.trace(mid) if p.point != "tcp_acked"]
    assert points == ["composed", "written", "refused"]


# --------------------------------------------------------------------------- clock steps


async def refused_once(
    relays: RelayLab, clients: ClientLab
) -> tuple[Peer, FakeClock, FakeClock, bytes]:
    """alice's second message is refused RATE_LIMITED (retry after 5 s) at monotonic 0."""
    await relays.start(rate_per_second=0.2, rate_burst=1)
    wall, mono = FakeClock(WALL), FakeClock(0.0)
    alice = await alice_with_clocks(clients, wall, mono)
    await clients.register("bob")
    first = await alice.client.send("bob", "1")
    await alice.until(is_status(first, Status.SENT))
    mid = await alice.client.send("bob", "2")
    event = await alice.until(refused(mid))
    assert isinstance(event, SendRefused) and event.code_name == "RATE_LIMITED"
    assert event.retry_at == WALL + 5.0
    return alice, wall, mono, mid


async def test_a_wall_clock_stepped_back_an_hour_does_not_stall_the_outbox(
    relays: RelayLab, clients: ClientLab
) -> None:
    """The retry used to wait an hour (its time was on the wall clock)."""
    alice, wall, mono, mid = await refused_once(relays, clients)
    wall.advance(-HOUR)
    mono.advance(5.0)
    relays.clock.advance(5.0)  # the relay's bucket has a token again
    await alice.client.send("bob", "3")  # pumps the outbox: the retry is due
    await alice.until(is_status(mid, Status.SENT))


async def test_a_wall_clock_stepped_forward_an_hour_does_not_hasten_a_retry(
    relays: RelayLab, clients: ClientLab
) -> None:
    alice, wall, mono, mid = await refused_once(relays, clients)
    wall.advance(HOUR)
    mono.advance(1.0)
    relays.clock.advance(5.0)
    await alice.client.send("bob", "3")  # pumps: neither 2 (due at 5) nor 3 (behind it) go
    scheduler = alice.client._outbox.scheduler
    assert scheduler.in_flight == 0
    assert [e.attempts for e in scheduler.entries()] == [1, 0]
    mono.advance(4.0)
    await alice.client.send("bob", "4")
    await alice.until(is_status(mid, Status.SENT))


async def test_a_retry_time_stored_before_a_restart_survives_a_step_back(
    relays: RelayLab, clients: ClientLab
) -> None:
    """After a restart with the wall clock an hour back, the stored retry time (wall clock)
    waits at most the longest backoff, not the hour."""
    alice, wall, _, mid = await refused_once(relays, clients)
    await alice.client.close()
    wall.advance(-HOUR)
    mono = FakeClock(500.0)  # a new process: another monotonic origin
    alice = await alice_with_clocks(clients, wall, mono, alice.home)
    [entry] = [e for e in alice.client._outbox.scheduler.entries() if e.message_id == mid]
    assert entry.next_attempt_at == 500.0 + RETRY_CAP
    mono.advance(RETRY_CAP)
    relays.clock.advance(RETRY_CAP)
    await alice.client.send("bob", "3")
    await alice.until(is_status(mid, Status.SENT))
