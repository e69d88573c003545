"""The relay's connection core without sockets, SQLite, asyncio or a clock: frames and literal
``now`` values in, frames, store commands and actions out; the store commands run on the
in-memory store, by hand, when a test says so (so a test can hold them and look in between)."""

from __future__ import annotations

import ast
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

import tidings.server.core as core_module
import tidings.server.core_actions as core_actions
import tidings.server.core_base as core_base
import tidings.server.core_certs as core_certs
import tidings.server.core_delivery as core_delivery
import tidings.server.core_devices as core_devices
import tidings.server.core_multi as core_multi
import tidings.server.core_prekeys as core_prekeys
import tidings.server.core_push as core_push
import tidings.server.core_sealed as core_sealed
import tidings.server.core_sealed_multi as core_sealed_multi
import tidings.server.sealed_certs as sealed_certs
import tidings.server.wake_schedule as wake_schedule
from tests.server.test_prekeys import kem, one_time, signed
from tidings.errors import StoreUnavailable
from tidings.server.config import ServerConfig
from tidings.server.core import RelayCore, State
from tidings.server.core_actions import (
    AckItems,
    Action,
    AnnounceDevices,
    Attach,
    CloseConnection,
    CountPrekeys,
    CreateAccount,
    ExpectAuth,
    Failure,
    FetchItems,
    NotifyPrekeysLow,
    PutLinkCode,
    SendStored,
    StoreCommand,
    StoreTrouble,
)
from tidings.server.limits import Limits
from tidings.server.session import _RUN
from tidings.store import DeviceRef, InboxItem, Submission
from tidings.store.memory import MemoryStore
from tidings.wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    Frame,
    FrameType,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Ping,
    Pong,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysLow,
    PrekeysStored,
    PrekeysUpload,
    Refused,
    Register,
    Registered,
    RequestFailed,
    Send,
    Sent,
    Target,
    Welcome,
)

T0 = 1_700_000_000.0  # the wall clock of every test: literal
ALICE1, BOB1 = DeviceRef("alice", 1), DeviceRef("bob", 1)
STORE_RETRY = 7.0


def run_now(awaitable: object) -> Any:
    """Run a coroutine of the in-memory store, which never awaits, to its end."""
    coro = cast(Coroutine[Any, Any, Any], awaitable)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the in-memory store awaited")


class Wire:
    """One connection's core, the store its commands run on, and what came out of it."""

    def __init__(
        self, store: MemoryStore, limits: Limits, config: ServerConfig, key: bytes
    ) -> None:
        self.store = store
        self.core = RelayCore(
            config, limits, lambda n: bytes(range(n)), store_retry_after=STORE_RETRY
        )
        self.core.handshake_done(key, "192.0.2.7", T0)
        self.frames: list[Frame] = []
        self.actions: list[Action] = []
        self.held: list[StoreCommand] = []
        self.fail: dict[type, Exception] = {}  # store operations that fail, by type

    def _collect(self) -> None:
        self.frames += self.core.frames_to_send()
        self.actions += self.core.actions()
        self.held += self.core.store_commands()

    def feed(self, frame: Frame, *, now: float = T0, mono: float = 0.0, run: bool = True) -> None:
        self.core.receive_frame(frame, now, mono)
        self._collect()
        if run:
            self.run(now=now, mono=mono)

    def offer(self, item: InboxItem, *, now: float = T0, run: bool = True) -> None:
        self.core.offer(item, now, 0.0)
        self._collect()
        if run:
            self.run(now=now)

    def run(self, *, now: float = T0, mono: float = 0.0, count: int | None = None) -> None:
        """Run the held store commands in order (``count``: only that many)."""
        done = 0
        while self.held and (count is None or done < count):
            command_id, op = self.held.pop(0)
            failure = self.fail.get(type(op))
            if failure is not None:
                self.core.store_failed(command_id, failure, now, mono)
            else:
                try:
                    result = run_now(_RUN[type(op)](self.store, op))
                except Exception as exc:  # what the store refuses (IntegrityError)
                    self.core.store_failed(command_id, exc, now, mono)
                else:
                    self.core.stored(command_id, result, now, mono)
            self._collect()
            done += 1

    def take(self) -> list[Frame]:
        out, self.frames = self.frames, []
        return out

    def take_actions(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out

    def closed_with(self) -> CloseConnection:
        closes = [a for a in self.actions if isinstance(a, CloseConnection)]
        assert len(closes) == 1, self.actions
        assert self.core.state is State.CLOSED
        return closes[0]


class Lab:
    """Wires on one in-memory store with shared budgets, and the routing between them."""

    def __init__(self, **config: Any) -> None:
        self.config = ServerConfig(**config)
        self.limits = Limits(self.config)
        self.store = MemoryStore()
        run_now(self.store.open())
        self.live: dict[DeviceRef, Wire] = {}

    def wire(self, key: bytes) -> Wire:
        return Wire(self.store, self.limits, self.config, key)

    def registered(self, account: str) -> bytes:
        """The key of ``account``'s device 1, registered (once) but not connected."""
        key = account.encode().ljust(32, b"k")
        if run_now(self.store.device_by_key(key)) is None:
            run_now(self.store.create_account(account, key, "phone", T0))
        return key

    def device(self, account: str, *, cursor: int = 0) -> Wire:
        """A registered device of ``account`` (device 1) whose connection is open."""
        w = self.wire(self.registered(account))
        w.feed(Hello(PROTOCOL_VERSION, cursor))
        (welcome, *_) = w.take()
        assert isinstance(welcome, Welcome)
        assert w.core.device is not None
        self.live[w.core.device] = w
        return w

    def route(self, w: Wire) -> None:
        """Hand the items ``w``'s sends stored to the live wires of their devices."""
        for action in w.take_actions():
            if isinstance(action, SendStored):
                for ref, item in action.result.items:
                    if ref in self.live:
                        self.live[ref].offer(item)


def send_to(recipient: str, n: int, *targets: DeviceRef, payload: bytes = b"x") -> Send:
    message_id = n.to_bytes(16, "big")
    return Send(
        message_id, recipient, tuple(Target(t.account, t.device_id, payload) for t in targets)
    )


def queue(lab: Lab, sender: DeviceRef, recipient: DeviceRef, count: int, first: int = 1000) -> None:
    """Store ``count`` messages for ``recipient`` straight in the store."""
    for i in range(count):
        sub = Submission(
            sender,
            (first + i).to_bytes(16, "big"),
            recipient.account,
            ((recipient, b"m"),),
            T0,
            T0 + 3600,
            1000,
        )
        run_now(lab.store.submit(sub))


def seqs(frames: list[Frame]) -> list[int]:
    return [f.seq for f in frames if isinstance(f, Deliver)]


# ---------------------------------------------------------------- the core does no I/O


@pytest.mark.parametrize(
    "module",
    [
        core_module,
        core_base,
        core_actions,
        core_delivery,
        core_devices,
        core_multi,
        core_certs,
        core_prekeys,
        core_push,
        core_sealed,
        core_sealed_multi,
        sealed_certs,
        wake_schedule,
    ],
)
def test_the_core_imports_no_io(module: object) -> None:
    """No asyncio, socket, clock, thread, database or store backend; of the relay, only its
    values and the other sans-I/O parts (never the session, the app, health or metrics)."""
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    absolute, relative = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                relative.add("." * node.level + node.module)
            else:
                absolute.add(node.module.split(".")[0])
    assert absolute <= {
        "__future__",
        "collections",
        "dataclasses",
        "enum",
        "hashlib",
        "heapq",
        "math",
        "typing",
    }
    allowed = {
        "..errors",
        "..store",
        "..wire",
        ".config",
        ".limits",
        ".prekeys",
        ".core_actions",
        ".core_base",
        ".core_delivery",
        ".core_prekeys",
        ".core_push",
        ".core_devices",
        ".core_multi",
        ".core_certs",
        ".core_sealed",
        ".core_sealed_multi",
        ".sealed_certs",
        "..e2e.certificates",  # sender certificates: pure values and signatures
        "..e2e.keys",
        "..e2e.xeddsa",
        "..push.endpoint",  # the SSRF rules' exception type (sans-I/O)
        "..refs",
    }
    assert relative <= allowed


def test_the_core_has_no_timers() -> None:
    lab = Lab()
    assert lab.device("alice").core.next_deadline() is None


# ---------------------------------------------------------------- states


def test_a_send_before_hello_is_an_unexpected_frame_and_touches_no_store() -> None:
    lab = Lab()
    w = lab.wire(b"k" * 32)
    w.feed(send_to("bob", 1, BOB1), run=False)
    assert w.held == []
    close = w.closed_with()
    assert (close.code, close.frame_type) == (ErrorCode.UNEXPECTED_FRAME, FrameType.SEND)
    w.feed(Ping(1))  # the closed state is sticky
    assert w.take() == []


def test_frames_after_a_register_wait_for_its_answer_and_keep_their_order() -> None:
    lab = Lab()
    w = lab.wire(b"n" * 32)
    w.feed(Register(PROTOCOL_VERSION, "carol", "phone"), run=False)
    w.feed(Ping(5), run=False)
    assert w.take() == []  # PING waits: it is answered in order
    assert [type(op) for _, op in w.held] == [CreateAccount]
    w.run()
    assert w.take() == [Registered("carol", 1), Pong(5)]
    assert any(isinstance(a, ExpectAuth) for a in w.take_actions())
    assert w.core.state is State.EXPECT_HELLO


def test_register_refusals_are_errors_with_the_rule_and_the_rate() -> None:
    lab = Lab(address_registrations_per_hour=1)
    lab.device("alice")
    w = lab.wire(b"z" * 32)
    w.feed(Register(PROTOCOL_VERSION, "alice", "phone"))
    assert w.closed_with().code == ErrorCode.ACCOUNT_EXISTS
    # the refused one spent the address's only registration of the hour
    w = lab.wire(b"y" * 32)
    w.feed(Register(PROTOCOL_VERSION, "dave", "phone"), mono=60.0)
    close = w.closed_with()
    assert close.code == ErrorCode.RATE_LIMITED
    assert "retry in 3540 s" in close.reason


def test_linking_announces_the_devices_before_registered() -> None:
    lab = Lab()
    alice = lab.device("alice")
    alice.feed(LinkCodeRequest(3))
    (answer,) = alice.take()
    assert isinstance(answer, LinkCode) and answer.code == bytes(range(16))
    w = lab.wire(b"L" * 32)
    w.feed(Register(PROTOCOL_VERSION, "alice", "laptop", answer.code))
    actions = w.take_actions()
    assert AnnounceDevices("alice", (1, 2)) in actions
    assert w.take() == [Registered("alice", 2)]


def test_a_wrong_link_code_is_refused() -> None:
    lab = Lab()
    lab.device("alice")
    w = lab.wire(b"L" * 32)
    w.feed(Register(PROTOCOL_VERSION, "alice", "laptop", b"\x00" * 16))
    assert w.closed_with().code == ErrorCode.INVALID_LINK_CODE


# ---------------------------------------------------------------- HELLO and the cursor


def test_hello_with_an_unknown_key_is_refused() -> None:
    lab = Lab()
    w = lab.wire(b"?" * 32)
    w.feed(Hello(PROTOCOL_VERSION, 0))
    assert w.closed_with().code == ErrorCode.UNKNOWN_DEVICE
    assert not any(isinstance(a, Attach) for a in w.actions)


def test_a_cursor_above_the_last_seq_is_refused_and_deletes_nothing() -> None:
    lab = Lab()
    lab.device("alice")
    bob_key = lab.registered("bob")
    queue(lab, ALICE1, BOB1, 2)
    w = lab.wire(bob_key)
    w.feed(Hello(PROTOCOL_VERSION, 3))
    close = w.closed_with()
    assert (close.code, close.reason) == (ErrorCode.INVALID_ACK, "cursor above the last seq (2)")
    assert run_now(lab.store.queue_depth(BOB1)) == 2


def test_hello_acks_up_to_its_cursor_and_streams_the_rest() -> None:
    lab = Lab()
    lab.device("alice")
    bob_key = lab.registered("bob")
    queue(lab, ALICE1, BOB1, 5)
    w = lab.wire(bob_key)
    w.feed(Hello(PROTOCOL_VERSION, 2), now=T0 + 9)
    welcome, *delivers = w.take()
    cfg = lab.config
    assert welcome == Welcome("bob", 1, T0 + 9, float(cfg.retention_seconds), cfg.max_payload, 3, 5)
    assert seqs(delivers) == [3, 4, 5]
    assert run_now(lab.store.queue_depth(BOB1)) == 3
    assert Attach() in w.actions


# ---------------------------------------------------------------- the delivery window and ACK


def test_the_window_bounds_unacked_delivers_and_acks_are_cumulative() -> None:
    lab = Lab(delivery_window=2)
    lab.device("alice")
    bob_key = lab.registered("bob")
    queue(lab, ALICE1, BOB1, 5)
    w = lab.wire(bob_key)
    w.feed(Hello(PROTOCOL_VERSION, 0))
    assert seqs(w.take()) == [1, 2]
    w.feed(Ack(1))
    assert seqs(w.take()) == [3]
    w.feed(Ack(1))  # at or below the last: ignored
    assert w.take() == [] and w.held == []
    w.feed(Ack(3))  # cumulative: 2 and 3
    assert seqs(w.take()) == [4, 5]
    assert run_now(lab.store.queue_depth(BOB1)) == 2


def test_an_ack_above_what_was_delivered_is_a_violation() -> None:
    lab = Lab()
    w = lab.device("alice")
    w.feed(Ack(1))
    close = w.closed_with()
    assert (close.code, close.frame_type) == (ErrorCode.INVALID_ACK, FrameType.ACK)
    assert not [op for _, op in w.held if isinstance(op, AckItems)]


def test_an_ack_does_not_hold_the_frames_after_it() -> None:
    lab = Lab()
    lab.device("alice")
    bob_key = lab.registered("bob")
    queue(lab, ALICE1, BOB1, 1)
    w = lab.wire(bob_key)
    w.feed(Hello(PROTOCOL_VERSION, 0))
    w.take()
    w.feed(Ack(1), run=False)
    w.feed(Ping(9), run=False)
    assert w.take() == [Pong(9)]  # before the deletion was committed
    assert [type(op) for _, op in w.held] == [AckItems]


def test_a_live_item_is_pushed_from_memory_when_next_in_line() -> None:
    lab = Lab(delivery_window=1)
    alice, bob = lab.device("alice"), lab.device("bob")
    alice.feed(send_to("bob", 1, BOB1))
    lab.route(alice)
    assert seqs(bob.take()) == [1]
    assert bob.held == []  # no store read: it came from memory
    alice.feed(send_to("bob", 2, BOB1))
    lab.route(alice)  # the window is full: it waits in the store
    assert bob.take() == []
    bob.feed(Ack(1))
    assert seqs(bob.take()) == [2]  # read from the store: a page after the ACK


def test_an_offer_during_a_page_read_is_read_with_the_next_page() -> None:
    lab = Lab()
    lab.device("alice")
    bob_key = lab.registered("bob")
    queue(lab, ALICE1, BOB1, 1)
    w = lab.wire(bob_key)
    w.feed(Hello(PROTOCOL_VERSION, 0), run=False)
    w.run(count=3)  # device, last seq, depth: the page read is still held
    assert [type(op) for _, op in w.held] == [FetchItems, CountPrekeys]
    queue(lab, ALICE1, BOB1, 1, first=2000)
    (item,) = run_now(lab.store.fetch(BOB1, 1, 10))
    w.offer(item, run=False)  # not next in line while the read is in flight
    w.run()
    assert seqs(w.take()) == [1, 2]


# ---------------------------------------------------------------- SEND and G1


def test_sent_only_after_the_commit() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(send_to("bob", 1, BOB1), run=False)
    alice.feed(send_to("bob", 2, BOB1), run=False)
    alice.run(count=1)  # the account's age, read once (the first send waits for it)
    # both sends go to the store before either is answered: one commit for both
    assert [type(op) for _, op in alice.held] == [Submission, Submission]
    assert alice.take() == []
    alice.run(count=1)
    (sent,) = alice.take()
    assert sent == Sent((1).to_bytes(16, "big"), T0, False)
    (stored,) = [a for a in alice.take_actions() if isinstance(a, SendStored)]
    assert [ref for ref, _ in stored.result.items] == [BOB1]
    alice.run()
    assert [type(f) for f in alice.take()] == [Sent]


def test_a_retried_send_is_a_duplicate() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(send_to("bob", 1, BOB1))
    alice.feed(send_to("bob", 1, BOB1))
    first, second = alice.take()
    assert isinstance(first, Sent) and isinstance(second, Sent)
    assert (first.duplicate, second.duplicate) == (False, True)


def test_a_failed_commit_is_refused_with_a_retry_and_the_connection_stays() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.device("bob")
    alice.fail[Submission] = StoreUnavailable("full", "disk full")
    alice.feed(send_to("bob", 1, BOB1))
    (refused,) = alice.take()
    assert isinstance(refused, Refused)
    assert (refused.code, refused.retry_after) == (ErrorCode.STORE_UNAVAILABLE, STORE_RETRY)
    assert any(isinstance(a, StoreTrouble) for a in alice.actions)
    assert alice.core.state is State.OPEN
    assert run_now(lab.store.queue_depth(BOB1)) == 0


def test_a_send_to_the_wrong_devices_is_refused_with_the_difference() -> None:
    lab = Lab()
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(send_to("bob", 1, DeviceRef("bob", 2)))
    (refused,) = alice.take()
    assert isinstance(refused, Refused) and refused.code == ErrorCode.DEVICE_MISMATCH
    assert (refused.missing, refused.stale) == ((("bob", 1),), (("bob", 2),))
    alice.feed(send_to("nobody", 2, DeviceRef("nobody", 1)))
    (refused,) = alice.take()
    assert isinstance(refused, Refused) and refused.code == ErrorCode.NO_SUCH_ACCOUNT


def test_send_refusals_decided_before_the_store() -> None:
    lab = Lab(max_payload=4, rate_per_second=1.0, rate_burst=1)
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(send_to("bob", 1, BOB1, payload=b"12345"))
    (refused,) = alice.take()
    assert isinstance(refused, Refused) and refused.code == ErrorCode.PAYLOAD_TOO_LARGE
    alice.feed(send_to("bob", 2, BOB1), mono=10.0)
    alice.feed(send_to("bob", 3, BOB1), mono=10.25, run=False)
    assert [type(op) for _, op in alice.held] == []
    sent, refused = alice.take()
    assert isinstance(sent, Sent) and isinstance(refused, Refused)
    assert refused.code == ErrorCode.RATE_LIMITED
    assert refused.retry_after == pytest.approx(0.75)
    alice.feed(send_to("bob", 3, BOB1), mono=11.0)
    assert isinstance(alice.take()[0], Sent)


def test_a_send_committed_after_the_close_still_reaches_its_recipient() -> None:
    lab = Lab()
    alice, bob = lab.device("alice"), lab.device("bob")
    alice.feed(send_to("bob", 1, BOB1), run=False)
    alice.run(count=1)  # the account's age: the send is with the store now
    alice.core.connection_closed()
    alice.run()
    assert alice.take() == []  # no SENT on a closed connection
    lab.route(alice)
    assert seqs(bob.take()) == [1]


# ---------------------------------------------------------------- requests and failures


def test_get_devices_of_others_is_rate_limited_but_not_of_its_own_account() -> None:
    lab = Lab(account_lookups_per_hour=1)
    alice = lab.device("alice")
    lab.device("bob")
    alice.feed(GetDevices(1, "bob"))
    alice.feed(GetDevices(2, "bob"))
    alice.feed(GetDevices(3, "alice"))
    first, second, third = alice.take()
    assert first == Devices(1, "bob", (1,))
    assert isinstance(second, RequestFailed) and second.code == ErrorCode.RATE_LIMITED
    assert third == Devices(3, "alice", (1,))


def test_a_link_code_is_stored_as_its_hash() -> None:
    import hashlib

    lab = Lab()
    alice = lab.device("alice")
    alice.feed(LinkCodeRequest(1), now=T0 + 5, run=False)
    ((_, op),) = alice.held
    assert isinstance(op, PutLinkCode)
    assert op.code_hash == hashlib.sha256(bytes(range(16))).digest()
    assert alice.take() == []  # LINK_CODE only once the code is stored
    alice.run()
    (answer,) = alice.take()
    assert isinstance(answer, LinkCode) and answer.expires_at == T0 + 5 + lab.config.link_code_ttl


def test_a_store_failure_in_a_decision_closes_with_store_unavailable() -> None:
    lab = Lab()
    run_now(lab.store.create_account("alice", b"a" * 32, "phone", T0))
    w = lab.wire(b"a" * 32)
    from tidings.server.core_actions import GetDeviceByKey

    w.fail[GetDeviceByKey] = StoreUnavailable("full", "disk full")
    w.feed(Hello(PROTOCOL_VERSION, 0))
    close = w.closed_with()
    assert (close.code, close.frame_type) == (ErrorCode.STORE_UNAVAILABLE, FrameType.HELLO)
    assert any(isinstance(a, StoreTrouble) for a in w.actions)


def test_a_bug_closes_the_connection_with_internal_and_never_raises() -> None:
    lab = Lab()
    alice = lab.device("alice")
    alice.core.config = None  # type: ignore[assignment]  # every rule that reads it breaks
    alice.feed(send_to("bob", 1, BOB1))
    assert alice.closed_with().code == ErrorCode.INTERNAL
    assert any(isinstance(a, Failure) for a in alice.actions)


# ---------------------------------------------------------------- prekeys


def upload(request_id: int, *ids: int, kem_ids: tuple[int, ...] | None = None) -> PrekeysUpload:
    kems = kem(*(ids if kem_ids is None else kem_ids), last_resort=99)
    return PrekeysUpload(request_id, b"I" * 32, signed(), one_time(*ids), kems)


def test_prekeys_upload_fetch_and_low() -> None:
    lab = Lab()
    alice, bob = lab.device("alice"), lab.device("bob")
    bob.feed(upload(1, 1, 2))
    assert bob.take() == [PrekeysStored(1, 2, 2)]
    alice.feed(PrekeyFetch(2, "bob", 1))
    (bundle,) = alice.take()
    assert isinstance(bundle, PrekeyBundle) and bundle.one_time is not None
    (low,) = [a for a in alice.actions if isinstance(a, NotifyPrekeysLow)]
    assert low.device == BOB1
    bob.core.prekeys_low(low.counts)
    assert bob.core.frames_to_send() == [PrekeysLow(1, 1)]


def test_too_many_prekeys_are_refused_and_a_missing_device_has_none() -> None:
    lab = Lab()
    alice = lab.device("alice")
    for i in range(10):
        alice.feed(upload(i, *range(100 * i + 1, 100 * i + 101), kem_ids=()))
    alice.take()
    alice.feed(upload(10, 1001, kem_ids=()))
    (failed,) = alice.take()
    assert isinstance(failed, RequestFailed) and failed.code == ErrorCode.INVALID_FIELD
    alice.feed(PrekeyFetch(2, "bob", 1))
    (failed,) = alice.take()
    assert isinstance(failed, RequestFailed) and failed.code == ErrorCode.NO_SUCH_ACCOUNT
    assert alice.core.state is State.OPEN
