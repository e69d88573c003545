"""Catch-up progress: the backlog WELCOME announces, counted as its items are committed.

The core (:class:`tidings.client.catchup.CatchUp`) with literal times; then a real relay and
clients: a device offline while messages queue for it reports "0 of N" when it connects, and
"N of N, finished" once all are stored, after every one of them was reported received.
"""

from __future__ import annotations

import pytest

from tests.harness import ClientLab, RelayLab
from tidings.api.forms import event_json
from tidings.cli.show import catch_up_text
from tidings.client import CatchingUp, Connected, MessageReceived, StatusChanged
from tidings.client.catchup import PROGRESS_INTERVAL, CatchUp
from tidings.delivery import Status


def test_nothing_waiting_is_no_catch_up() -> None:
    c = CatchUp()
    assert c.start(0, 17, now=100.0) is None
    c.stored(18)
    assert not c.active and c.report(now=200.0) is None


def test_progress_is_reported_at_most_every_interval_and_the_finish_always() -> None:
    c = CatchUp(interval=0.5)
    assert c.start(4, upto=14, now=10.0) == CatchingUp(0, 4, 0.0, False)
    c.stored(11)
    assert c.report(now=10.2) is None  # too soon
    c.stored(12)
    assert c.report(now=10.5) == CatchingUp(2, 4, 4.0, False)  # 2 items in 0.5 s
    c.stored(13)
    assert c.report(now=10.6) is None
    c.stored(14)  # backlog_upto itself: finished, reported at once
    last = c.report(now=10.8)
    assert last is not None and (last.done, last.total, last.finished) == (4, 4, True)
    assert last.rate == pytest.approx(5.0)
    assert not c.active
    c.stored(15)  # live traffic after the catch-up is not counted
    assert c.report(now=20.0) is None


def test_an_item_past_the_backlog_finishes_it_when_some_expired() -> None:
    c = CatchUp()
    c.start(3, upto=3, now=0.0)
    c.stored(1)
    c.stored(5)  # 2 and 3 expired on the relay meanwhile; a later item means: caught up
    assert c.report(now=1.0) == CatchingUp(1, 3, 1.0, True)


def test_a_disconnect_ends_the_report_of_that_session() -> None:
    c = CatchUp()
    c.start(10, upto=10, now=0.0)
    c.stored(1)
    c.stop()
    assert not c.active and c.report(now=5.0) is None
    assert c.start(9, upto=10, now=6.0) == CatchingUp(0, 9, 0.0, False)  # what is left


def test_the_forms_a_person_and_a_program_see() -> None:
    running = CatchingUp(3120, 10_000, 2480.4, False)
    assert catch_up_text(running) == "= catching up 3,120 / 10,000 (2,480/s)"
    assert catch_up_text(CatchingUp(0, 10_000, 0.0, False)) == "= catching up 0 / 10,000"
    done = CatchingUp(10_000, 10_000, 3100.0, True)
    assert catch_up_text(done) == "= caught up: fetched the 10,000 items that waited (3,100/s)"
    assert event_json(running) == {
        "event": "catching-up",
        "done": 3120,
        "total": 10_000,
        "rate": 2480.4,
        "finished": False,
    }
    assert PROGRESS_INTERVAL == 0.5  # docs/api.md says so


async def test_a_device_back_from_an_absence_reports_its_catch_up(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start(new_account_age=0, rate_per_second=10_000, rate_burst=10_000)
    alice = await clients.new("alice")
    bob_home = await clients.register("bob")
    n = 300
    for i in range(n):
        await alice.client.send("bob", f"m{i}")
    await alice.until_all(lambda e: isinstance(e, StatusChanged) and e.status is Status.SENT, n, 60)

    bob = await clients.start(bob_home, connect=False)
    await bob.until(lambda e: isinstance(e, CatchingUp) and e.finished, 60)
    kinds = [type(e) for e in bob.seen]
    # "online" before the first message and the catch-up's start: a person reads it in order
    assert kinds.index(Connected) < kinds.index(CatchingUp) < kinds.index(MessageReceived)
    progress = [e for e in bob.seen if isinstance(e, CatchingUp)]
    assert progress[0] == CatchingUp(0, n, 0.0, False)  # announced before any is stored
    assert progress[-1].done == progress[-1].total == n and progress[-1].finished
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    # Every message the finish counts was reported before it (it counts committed items).
    assert sum(isinstance(e, MessageReceived) for e in bob.seen) == n
