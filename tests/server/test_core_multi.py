"""MULTI_SEND in the relay's connection core, without sockets or SQLite: literal ``now``, the
in-memory store run by hand (the ``Lab`` of ``test_core``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.server.test_core import T0, Lab, run_now
from tidings.errors import StoreUnavailable
from tidings.server.core import State
from tidings.server.core_actions import SendStored, StoreTrouble
from tidings.store import DeviceRef, MultiSubmission
from tidings.wire import (
    PROTOCOL_VERSION,
    AccountRefusal,
    Deliver,
    ErrorCode,
    Hello,
    MultiAccount,
    MultiDevice,
    MultiSend,
    MultiSent,
)

SHARED = b"S" * 40


def multi(n: int, accounts: dict[str, list[int]], *, shared: bytes = SHARED) -> MultiSend:
    """MULTI_SEND ``n`` (request id and message id) whose part for each device names it."""
    return MultiSend(
        n,
        n.to_bytes(16, "big"),
        shared,
        tuple(
            MultiAccount(a, tuple(MultiDevice(d, f"{a}.{d}:".encode()) for d in ids))
            for a, ids in accounts.items()
        ),
    )


def linked(lab: Lab, account: str, device_id: int) -> None:
    """Give ``account`` (registered) a device ``device_id`` straight in the store."""
    code = f"{account}{device_id}".encode().ljust(32, b"c")
    first = DeviceRef(account, 1)
    run_now(lab.store.put_link_code(first, code, T0 + 600, T0))
    run_now(lab.store.add_device(account, code.replace(b"c", b"d"), "x", code, T0))


def answers(frames: Sequence[object]) -> list[MultiSent]:
    return [f for f in frames if isinstance(f, MultiSent)]


def test_a_multi_send_is_answered_after_the_commit_and_each_device_gets_part_then_shared() -> None:
    lab = Lab()
    alice = lab.device("alice")
    bob, carol = lab.device("bob"), lab.device("carol")
    alice.feed(multi(1, {"bob": [1], "carol": [1]}), run=False)
    alice.run(count=1)  # the account's age
    assert [type(op) for _, op in alice.held] == [MultiSubmission]
    assert alice.take() == []  # nothing before the commit (G1)
    alice.run()
    (sent,) = alice.take()
    assert sent == MultiSent(1, (1).to_bytes(16, "big"), 0, T0, False, "", 0.0, ())
    lab.route(alice)
    for wire, name in ((bob, "bob"), (carol, "carol")):
        (deliver,) = wire.take()
        assert isinstance(deliver, Deliver) and deliver.kind == 0
        assert deliver.payload == f"{name}.1:".encode() + SHARED
        assert (deliver.sender_account, deliver.sender_device) == ("alice", 1)


def test_a_retry_is_a_duplicate_and_offers_nothing() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(multi(1, {"bob": [1]}))
    alice.take_actions()
    alice.feed(multi(1, {"bob": [1]}))
    first, again = answers(alice.take())
    assert (first.code, again.code, again.duplicate) == (0, 0, True)
    (stored,) = [a for a in alice.take_actions() if isinstance(a, SendStored)]
    assert stored.result.items == ()
    assert run_now(lab.store.queue_depth(DeviceRef("bob", 1))) == 1


def test_every_refused_account_is_listed_in_send_order_and_nothing_is_stored() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.registered("bob")
    linked(lab, "bob", 2)
    lab.registered("carol")
    alice.feed(multi(1, {"nobody": [1], "bob": [1, 3], "carol": [1]}))
    (refused,) = alice.take()
    assert isinstance(refused, MultiSent)
    assert (refused.code, refused.stored_at) == (ErrorCode.RECIPIENTS_REFUSED, 0.0)
    assert refused.refusals == (
        AccountRefusal("nobody", ErrorCode.NO_SUCH_ACCOUNT),
        AccountRefusal("bob", ErrorCode.DEVICE_MISMATCH, missing=(2,), stale=(3,)),
    )
    assert run_now(lab.store.total_queued()) == 0
    alice.feed(multi(1, {"bob": [1, 2], "carol": [1]}))  # fixed, the same message id
    (fixed,) = alice.take()
    assert isinstance(fixed, MultiSent) and (fixed.code, fixed.duplicate) == (0, False)


def test_the_senders_own_account_needs_its_other_devices() -> None:
    lab = Lab()
    alice = lab.device("alice")
    linked(lab, "alice", 2)
    lab.registered("bob")
    alice.feed(multi(1, {"bob": [1]}))  # no own copies: as SEND, "none" is fine
    alice.feed(multi(2, {"alice": [1, 2], "bob": [1]}))
    ok, refused = answers(alice.take())
    assert ok.code == 0
    assert refused.refusals == (AccountRefusal("alice", ErrorCode.DEVICE_MISMATCH, (), (1,)),)


def test_a_full_queue_refuses_with_a_retry() -> None:
    lab = Lab(max_queue=1)
    alice = lab.device("alice")
    lab.registered("bob")
    lab.registered("carol")
    alice.feed(multi(1, {"carol": [1]}))
    alice.feed(multi(2, {"bob": [1], "carol": [1]}))
    ok, full = answers(alice.take())
    assert ok.code == 0 and full.code == ErrorCode.RECIPIENTS_REFUSED
    assert full.refusals == (AccountRefusal("carol", ErrorCode.QUEUE_FULL),)
    assert full.retry_after == alice.core.queue_full_retry_after > 0
    assert "carol" in full.reason
    assert run_now(lab.store.queue_depth(DeviceRef("bob", 1))) == 0


def test_refusals_before_the_store_payload_and_rate() -> None:
    lab = Lab(max_payload=48, rate_per_second=1.0, rate_burst=1)
    alice = lab.device("alice")
    lab.registered("bob")
    alice.feed(multi(1, {"bob": [1]}, shared=b"S" * 43))  # "bob.1:" is 6 bytes: 49 > 48
    (too_big,) = answers(alice.take())
    assert too_big.code == ErrorCode.PAYLOAD_TOO_LARGE
    alice.feed(multi(2, {"bob": [1]}), mono=10.0)
    alice.feed(multi(3, {"bob": [1]}), mono=10.25, run=False)
    assert alice.held == []
    ok, limited = answers(alice.take())
    assert ok.code == 0 and limited.code == ErrorCode.RATE_LIMITED
    assert limited.retry_after == pytest.approx(0.75)


def test_a_store_failure_is_refused_and_the_connection_stays() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.registered("bob")
    alice.fail[MultiSubmission] = StoreUnavailable("full", "disk full")
    alice.feed(multi(1, {"bob": [1]}))
    (refused,) = answers(alice.take())
    assert refused.code == ErrorCode.STORE_UNAVAILABLE and refused.retry_after > 0
    assert any(isinstance(a, StoreTrouble) for a in alice.actions)
    assert alice.core.state is State.OPEN


def test_a_stored_multi_send_is_fetched_whole_by_a_device_that_connects_later() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.registered("bob")
    alice.feed(multi(1, {"bob": [1]}))
    bob = lab.wire(lab.registered("bob"))
    bob.feed(Hello(PROTOCOL_VERSION, 0))  # read from the store, not offered
    (deliver,) = [f for f in bob.take() if isinstance(f, Deliver)]
    assert deliver.payload == b"bob.1:" + SHARED


def test_multi_send_before_hello_is_an_unexpected_frame() -> None:
    lab = Lab()
    w = lab.wire(lab.registered("alice"))
    w.feed(multi(1, {"bob": [1]}))
    assert w.closed_with().code == ErrorCode.UNEXPECTED_FRAME
    assert w.held == []
