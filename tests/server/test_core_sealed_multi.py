"""SEALED_MULTI_SEND at the relay's connection core, without sockets or SQLite: the rules of
docs/protocol.md §6.39–6.40 and §14.3 on the in-memory store, with literal times."""

from __future__ import annotations

from collections.abc import Mapping

from tests.server.test_core import T0, Lab, Wire, run_now
from tests.server.test_core_multi import linked
from tests.server.test_core_sealed import unidentified
from tidings.errors import StoreError, StoreUnavailable
from tidings.server.core import QUEUE_FULL_RETRY_AFTER, State
from tidings.server.core_actions import SealedCounted, SendStored
from tidings.server.limits import SEALED_ADDRESS_BURST, SEALED_RECIPIENT_BURST
from tidings.store import NO_SENDER, DeviceRef, ItemKind, SealedMultiSubmission, TagState
from tidings.wire import (
    AccountRefusal,
    Ack,
    Deliver,
    ErrorCode,
    MultiDevice,
    SealedMultiAccount,
    SealedMultiSend,
    SealedMultiSent,
    TagQuery,
    TagStatus,
)

KEYS = {"bob": bytes(range(16)), "carol": bytes(range(1, 17))}
WRONG = b"\xee" * 16
TAG = b"g" * 16
SHARED = b"E" * 32 + b"group ciphertext"


def members(lab: Lab) -> dict[str, Wire]:
    """bob (devices 1 and 2) and carol (device 1), live, with their access keys."""
    wires = {"bob": lab.device("bob"), "carol": lab.device("carol")}
    linked(lab, "bob", 2)
    for account, key in KEYS.items():
        run_now(lab.store.put_access_key(DeviceRef(account, 1), key))
    return wires


def send(
    *,
    tag: bytes = TAG,
    accounts: Mapping[str, tuple[int, ...]] | None = None,
    keys: dict[str, bytes] | None = None,
    shared: bytes = SHARED,
) -> SealedMultiSend:
    accounts = {"bob": (1, 2), "carol": (1,)} if accounts is None else accounts
    keys = KEYS if keys is None else keys
    return SealedMultiSend(
        tag,
        shared,
        tuple(
            SealedMultiAccount(
                a, keys[a], tuple(MultiDevice(i, b"\x22part %s.%d" % (a.encode(), i)) for i in ids)
            )
            for a, ids in accounts.items()
        ),
    )


def answer(w: Wire) -> SealedMultiSent:
    (frame,) = w.take()
    assert isinstance(frame, SealedMultiSent)
    return frame


def test_stored_once_answered_after_the_commit_and_delivered_as_kind_3() -> None:
    lab = Lab()
    live = members(lab)
    w = unidentified(lab)
    w.feed(send(), now=T0 + 3, run=False)
    assert w.take() == []  # nothing before the commit (G1)
    ((_, op),) = w.held
    assert isinstance(op, SealedMultiSubmission)
    assert op.tag == TAG and op.shared == SHARED
    assert [(a, k, [r for r, _ in parts]) for a, k, parts in op.recipients] == [
        ("bob", KEYS["bob"], [DeviceRef("bob", 1), DeviceRef("bob", 2)]),
        ("carol", KEYS["carol"], [DeviceRef("carol", 1)]),
    ]
    assert op.max_stranger_queue == lab.config.max_stranger_queue
    w.run(now=T0 + 3)
    sent = answer(w)
    assert (sent.tag, sent.code, sent.stored_at, sent.duplicate, sent.refusals) == (
        TAG,
        0,
        T0 + 3,
        False,
        (),
    )
    actions = w.take_actions()
    assert SealedCounted(0, False) in actions
    (stored,) = [a for a in actions if isinstance(a, SendStored)]
    assert len(stored.result.items) == 3
    w.actions = [stored]
    lab.route(w)
    for account, wire in live.items():
        (deliver,) = wire.take()
        assert isinstance(deliver, Deliver)
        assert (deliver.kind, deliver.sender_account, deliver.sender_device) == (
            ItemKind.SEALED,
            NO_SENDER.account,
            0,
        )
        assert deliver.message_id == TAG
        assert deliver.payload == b"\x22part %s.1" % account.encode() + SHARED
        wire.feed(Ack(deliver.seq))
    w.feed(TagQuery(5, (TAG,)))
    assert w.take() == [TagStatus(5, ((TAG, int(TagState.QUEUED)),))]  # bob's device 2 waits
    assert w.core.state is State.UNIDENTIFIED


def test_any_account_denied_refuses_all_with_one_code_for_each() -> None:
    lab = Lab()
    members(lab)
    lab.device("dave")  # an account without a key
    w = unidentified(lab)
    keys = {**KEYS, "carol": WRONG, "dave": KEYS["bob"], "nobody": KEYS["bob"]}
    accounts = {"bob": (1, 2), "carol": (1,), "dave": (1,), "nobody": (1,)}
    w.feed(send(accounts=accounts, keys=keys))
    sent = answer(w)
    assert sent.code == ErrorCode.RECIPIENTS_REFUSED and sent.stored_at == 0
    denied = int(ErrorCode.ACCESS_DENIED)
    assert sent.refusals == (
        AccountRefusal("carol", denied),
        AccountRefusal("dave", denied),
        AccountRefusal("nobody", denied),
    )
    assert run_now(lab.store.queue_depth(DeviceRef("bob", 1))) == 0
    assert run_now(lab.store.tag_states([TAG])) == [TagState.UNKNOWN]
    assert w.core.state is State.UNIDENTIFIED


def test_the_same_tag_again_is_a_duplicate() -> None:
    lab = Lab()
    members(lab)
    w = unidentified(lab)
    w.feed(send(), now=T0 + 1)
    first = answer(w)
    w.feed(send(), now=T0 + 9)
    again = answer(w)
    assert (again.code, again.duplicate, again.stored_at) == (0, True, first.stored_at)
    assert run_now(lab.store.queue_depth(DeviceRef("bob", 2))) == 1
    assert SealedCounted(0, True) in w.take_actions()


def test_device_mismatches_name_every_account_off() -> None:
    lab = Lab()
    members(lab)
    w = unidentified(lab)
    w.feed(send(accounts={"bob": (1,), "carol": (1, 7)}))
    sent = answer(w)
    mismatch = int(ErrorCode.DEVICE_MISMATCH)
    assert sent.code == ErrorCode.RECIPIENTS_REFUSED
    assert sent.refusals == (
        AccountRefusal("bob", mismatch, (2,), ()),
        AccountRefusal("carol", mismatch, (), (7,)),
    )


def test_a_full_queue_asks_to_retry_later() -> None:
    lab = Lab(max_queue=1)
    members(lab)
    w = unidentified(lab)
    w.feed(send())
    assert answer(w).code == 0
    w.feed(send(tag=b"h" * 16))
    sent = answer(w)
    assert (sent.code, sent.retry_after) == (ErrorCode.RECIPIENTS_REFUSED, QUEUE_FULL_RETRY_AFTER)
    assert sent.refusals == (AccountRefusal("bob", int(ErrorCode.QUEUE_FULL)),)


def test_part_and_shared_over_the_limit_are_refused_before_the_store() -> None:
    lab = Lab(max_payload=1024)
    members(lab)
    w = unidentified(lab)
    w.feed(send(shared=bytes(1024 - 5)), run=False)
    assert w.held == []
    assert answer(w).code == ErrorCode.PAYLOAD_TOO_LARGE


def test_each_key_and_recipient_pair_spends_as_a_sealed_send_would() -> None:
    lab = Lab()
    members(lab)
    w = unidentified(lab)
    for n in range(SEALED_RECIPIENT_BURST):
        w.feed(send(tag=n.to_bytes(16, "big")))
        assert answer(w).code == 0
    w.feed(send(tag=b"x" * 16, accounts={"carol": (1,)}), run=False)
    assert w.held == []  # carol's pair is spent: nothing asked of the store
    sent = answer(w)
    assert sent.code == ErrorCode.RATE_LIMITED and sent.retry_after > 0


def test_a_denied_account_costs_the_address_as_a_sealed_send() -> None:
    lab = Lab()
    members(lab)
    w = unidentified(lab)
    guesses = 30  # keys guessed per frame
    frames = SEALED_ADDRESS_BURST // (guesses + 1) + 1  # then the address is in debt
    for n in range(frames):
        names = {f"g{n}x{i}": (1,) for i in range(guesses)}
        keys = {name: n.to_bytes(16, "big") for name in names}
        w.feed(send(tag=n.to_bytes(16, "big"), accounts=names, keys=keys))
        sent = answer(w)
        assert sent.code == ErrorCode.RECIPIENTS_REFUSED and len(sent.refusals) == guesses
    w.feed(send(tag=b"y" * 16), run=False)  # the address has spent its burst
    assert answer(w).code == ErrorCode.RATE_LIMITED


def test_store_failures_are_answered_with_a_retry() -> None:
    lab = Lab()
    members(lab)
    w = unidentified(lab)
    w.fail[SealedMultiSubmission] = StoreUnavailable("full")
    w.feed(send())
    sent = answer(w)
    assert (sent.code, sent.retry_after) == (ErrorCode.STORE_UNAVAILABLE, w.core.store_retry_after)
    w.fail[SealedMultiSubmission] = StoreError("boom")
    w.feed(send())
    assert (answer(w).code, w.core.state) == (ErrorCode.INTERNAL, State.UNIDENTIFIED)


def test_an_authenticated_session_may_not_send_it() -> None:
    lab = Lab()
    live = members(lab)
    live["bob"].feed(send(), run=False)
    assert live["bob"].held == []
    assert live["bob"].closed_with().code == ErrorCode.UNEXPECTED_FRAME
    assert run_now(lab.store.queue_depth(DeviceRef("carol", 1))) == 0
