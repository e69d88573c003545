"""SEALED_SEND and TAG_QUERY at the relay's connection core, without sockets or SQLite: the
rules of docs/protocol.md §6.34–6.38 and §14.2 on the in-memory store, with literal times."""

from __future__ import annotations

from tests.server.test_core import T0, Lab, Wire, run_now
from tests.server.test_core_sealed import unidentified
from tidings.errors import StoreError, StoreUnavailable
from tidings.server.core import QUEUE_FULL_RETRY_AFTER, State
from tidings.server.core_actions import (
    Failure,
    Log,
    ReadTagStates,
    SealedCounted,
    SendStored,
)
from tidings.server.limits import SEALED_ADDRESS_BURST, SEALED_RECIPIENT_BURST
from tidings.store import DeviceRef, ItemKind, SealedSubmission, TagState
from tidings.wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    ErrorCode,
    Hello,
    RequestFailed,
    SealedDevice,
    SealedSend,
    SealedSent,
    TagQuery,
    TagStatus,
)

KEY = bytes(range(16))
WRONG = bytes(range(1, 17))
TAG = b"t" * 16
BOB1, BOB2 = DeviceRef("bob", 1), DeviceRef("bob", 2)
PEER = "192.0.2.9"  #: the unidentified session's address (``unidentified``)


def bob(lab: Lab) -> Wire:
    """Bob's device 1, online, with his access key registered."""
    w = lab.device("bob")
    run_now(lab.store.put_access_key(BOB1, KEY))
    return w


def sealed_send(
    *, tag: bytes = TAG, recipient: str = "bob", key: bytes = KEY, ids: tuple[int, ...] = (1,)
) -> SealedSend:
    devices = tuple(SealedDevice(i, b"sealed for %d" % i) for i in ids)
    return SealedSend(tag, recipient, key, devices)


def answer(w: Wire) -> SealedSent:
    (frame,) = w.take()
    assert isinstance(frame, SealedSent)
    return frame


def route(lab: Lab, w: Wire) -> None:
    lab.route(w)


def test_a_sealed_send_is_answered_after_the_commit_and_delivered_as_kind_3() -> None:
    lab = Lab()
    recipient = bob(lab)
    w = unidentified(lab)
    w.feed(sealed_send(), now=T0 + 3, run=False)
    assert w.take() == []  # nothing before the commit (G1)
    ((_, op),) = w.held
    assert isinstance(op, SealedSubmission)
    assert (op.tag, op.recipient, op.access_key) == (TAG, "bob", KEY)
    assert op.payloads == ((BOB1, b"sealed for 1"),)
    assert op.expires_at == T0 + 3 + lab.config.retention_seconds
    assert op.max_stranger_queue == lab.config.max_stranger_queue
    w.run(now=T0 + 3)
    sent = answer(w)
    assert (sent.tag, sent.recipient, sent.code, sent.duplicate) == (TAG, "bob", 0, False)
    assert sent.stored_at == T0 + 3 and sent.reason == "" and sent.retry_after == 0
    actions = w.take_actions()
    assert SealedCounted(0, False) in actions
    (stored,) = [a for a in actions if isinstance(a, SendStored)]
    w.actions = [stored]
    route(lab, w)  # the relay hands the item to bob's live session, as a SEND's
    (deliver,) = recipient.take()
    assert isinstance(deliver, Deliver)
    assert (deliver.kind, deliver.sender_account, deliver.sender_device) == (3, "", 0)
    assert (deliver.message_id, deliver.payload) == (TAG, b"sealed for 1")
    w.feed(TagQuery(5, (TAG, b"u" * 16)))
    assert w.take() == [
        TagStatus(5, ((TAG, int(TagState.QUEUED)), (b"u" * 16, int(TagState.UNKNOWN))))
    ]
    recipient.feed(Ack(deliver.seq))
    w.feed(TagQuery(6, (TAG,)))
    assert w.take() == [TagStatus(6, ((TAG, int(TagState.DELIVERED)),))]
    assert w.core.state is State.UNIDENTIFIED


def test_a_device_offline_catches_up_with_its_sealed_item() -> None:
    lab = Lab()
    lab.registered("bob")
    run_now(lab.store.put_access_key(BOB1, KEY))
    w = unidentified(lab)
    w.feed(sealed_send())
    assert answer(w).code == 0
    later = lab.wire(lab.registered("bob"))  # connects later: the page read brings it
    later.feed(Hello(PROTOCOL_VERSION, 0))
    (deliver,) = [f for f in later.take() if isinstance(f, Deliver)]
    assert (deliver.kind, deliver.message_id) == (ItemKind.SEALED, TAG)


def test_wrong_key_no_key_and_no_account_are_one_refusal_and_store_nothing() -> None:
    lab = Lab()
    lab.device("carol")  # an account without a key
    bob(lab)
    answers = []
    for frame in (
        sealed_send(key=WRONG),
        sealed_send(recipient="carol"),
        sealed_send(recipient="nobody"),
    ):
        w = unidentified(lab)
        w.feed(frame)
        sent = answer(w)
        assert sent.code == ErrorCode.ACCESS_DENIED and int(ErrorCode.ACCESS_DENIED) == 31
        answers.append((sent.code, sent.reason, sent.stored_at, sent.retry_after))
        assert w.core.state is State.UNIDENTIFIED  # a refusal, not a violation
    assert len(set(answers)) == 1  # nothing tells them apart
    assert run_now(lab.store.queue_depth(BOB1)) == 0
    assert run_now(lab.store.tag_states([TAG])) == [TagState.UNKNOWN]


def test_the_same_tag_again_is_a_duplicate() -> None:
    lab = Lab()
    bob(lab)
    w = unidentified(lab)
    w.feed(sealed_send(), now=T0 + 1)
    first = answer(w)
    w.feed(sealed_send(), now=T0 + 9)
    again = answer(w)
    assert (again.code, again.duplicate, again.stored_at) == (0, True, first.stored_at)
    assert run_now(lab.store.queue_depth(BOB1)) == 1
    assert SealedCounted(0, True) in w.take_actions()


def test_a_device_mismatch_names_missing_and_stale_ids() -> None:
    lab = Lab()
    bob(lab)
    w = unidentified(lab)
    w.feed(sealed_send(ids=(2,)))
    sent = answer(w)
    assert (sent.code, sent.missing, sent.stale) == (ErrorCode.DEVICE_MISMATCH, (1,), (2,))
    assert sent.stored_at == 0


def test_a_full_queue_asks_to_retry_later() -> None:
    lab = Lab(max_queue=1)
    bob(lab)
    w = unidentified(lab)
    w.feed(sealed_send())
    assert answer(w).code == 0
    w.feed(sealed_send(tag=b"v" * 16))
    sent = answer(w)
    assert (sent.code, sent.retry_after) == (ErrorCode.QUEUE_FULL, QUEUE_FULL_RETRY_AFTER)


def test_a_payload_over_the_limit_is_refused_before_the_store() -> None:
    lab = Lab(max_payload=1024)
    bob(lab)
    w = unidentified(lab)
    w.feed(SealedSend(TAG, "bob", KEY, (SealedDevice(1, bytes(1025)),)), run=False)
    assert w.held == []
    assert answer(w).code == ErrorCode.PAYLOAD_TOO_LARGE


def test_sends_per_key_and_recipient_are_rate_limited() -> None:
    lab = Lab()
    bob(lab)
    w = unidentified(lab)
    for n in range(SEALED_RECIPIENT_BURST):
        w.feed(sealed_send(tag=n.to_bytes(16, "big")))
        assert answer(w).code == 0
    w.feed(sealed_send(tag=b"x" * 16), run=False)
    assert w.held == []  # nothing asked of the store
    sent = answer(w)
    assert sent.code == ErrorCode.RATE_LIMITED and sent.retry_after > 0
    # Another access key to the same account has its own budget (a wrong one: denied).
    w.feed(sealed_send(tag=b"x" * 16, key=WRONG))
    assert answer(w).code == ErrorCode.ACCESS_DENIED


def test_sends_per_source_address_are_rate_limited_whatever_the_key() -> None:
    lab = Lab()
    bob(lab)
    w = unidentified(lab)
    for n in range(SEALED_ADDRESS_BURST):  # guessing keys: each is a pair of its own
        w.feed(sealed_send(key=n.to_bytes(16, "big")))
        assert answer(w).code == ErrorCode.ACCESS_DENIED
    w.feed(sealed_send())
    assert answer(w).code == ErrorCode.RATE_LIMITED
    other = unidentified(lab)
    other.core.peer_ip = "198.51.100.1"
    other.feed(sealed_send())
    assert answer(other).code == 0


def test_store_failures_are_answered_with_a_retry() -> None:
    lab = Lab()
    bob(lab)
    w = unidentified(lab)
    w.fail[SealedSubmission] = StoreUnavailable("full")
    w.feed(sealed_send())
    sent = answer(w)
    assert (sent.code, sent.retry_after) == (ErrorCode.STORE_UNAVAILABLE, w.core.store_retry_after)
    w.fail[SealedSubmission] = StoreError("boom")
    w.feed(sealed_send())
    sent = answer(w)
    assert (sent.code, sent.retry_after) == (ErrorCode.INTERNAL, 1.0)
    assert w.core.state is State.UNIDENTIFIED
    w.fail[ReadTagStates] = StoreUnavailable("full")
    w.feed(TagQuery(3, (TAG,)))
    (failed,) = w.take()
    assert isinstance(failed, RequestFailed) and failed.code == ErrorCode.STORE_UNAVAILABLE


def test_an_authenticated_session_may_not_send_sealed_but_may_ask_tags() -> None:
    lab = Lab()
    bob(lab)
    alice = lab.device("alice")
    alice.feed(TagQuery(1, (TAG,)))
    assert alice.take() == [TagStatus(1, ((TAG, int(TagState.UNKNOWN)),))]
    alice.feed(sealed_send(), run=False)
    assert alice.held == []
    assert alice.closed_with().code == ErrorCode.UNEXPECTED_FRAME
    assert run_now(lab.store.queue_depth(BOB1)) == 0


def test_an_expired_sealed_item_shows_in_its_tag_and_tells_nobody() -> None:
    lab = Lab()
    lab.registered("bob")
    run_now(lab.store.put_access_key(BOB1, KEY))
    w = unidentified(lab)
    w.feed(sealed_send())
    assert answer(w).code == 0
    end = T0 + lab.config.retention_seconds
    result = run_now(lab.store.expire(end, end + 60, 100))
    assert result.notices == () and result.missed == ()
    w.feed(TagQuery(2, (TAG,)), now=end)
    assert w.take() == [TagStatus(2, ((TAG, int(TagState.EXPIRED)),))]


def test_no_log_line_names_the_sender() -> None:
    """The probe: every log line and failure an unidentified session and the recipient's
    session produce, through stores, refusals and failures, names neither the sender's
    address nor the key it presented."""
    lab = Lab(max_queue=2)
    recipient = bob(lab)
    w = unidentified(lab)
    frames = [
        sealed_send(),
        sealed_send(),  # duplicate
        sealed_send(key=WRONG),
        sealed_send(ids=(1, 2)),
        sealed_send(tag=b"y" * 16),
        sealed_send(tag=b"z" * 16),  # queue full
        TagQuery(1, (TAG,)),
    ]
    for frame in frames:
        w.feed(frame)
    w.fail[SealedSubmission] = StoreError("boom")
    w.feed(sealed_send(tag=b"w" * 16))
    actions = list(w.actions)
    route(lab, w)
    recipient.feed(Ack(recipient.core.sent_upto))
    actions += recipient.take_actions()
    lines = [a.message for a in actions if isinstance(a, Log | Failure)]
    for line in lines:
        assert PEER not in line and KEY.hex() not in line and WRONG.hex() not in line, line
    assert any(isinstance(a, Failure) for a in actions)  # the failure path was taken
