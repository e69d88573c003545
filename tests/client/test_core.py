"""The device's connection core, alone: frames and literal ``now`` values in; frames, actions
and deadlines out (no sockets, no loop, no store). A small in-memory relay answers it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tidings.client.core as core_module
import tidings.client.core_actions as core_actions
from tidings.client.core import (
    TRANSITIONS,
    Answered,
    CloseConnection,
    ConnectionCore,
    Incoming,
    OpenConnection,
    Opened,
    PinServerKey,
    RequestRefused,
    RequestsLost,
    State,
    Welcomed,
)
from tidings.client.events import CatchingUp, Connected, ConnectFailed, Disconnected
from tidings.errors import LocalProtocolError
from tidings.wire import (
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    Frame,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    RequestFailed,
    Sent,
    Welcome,
)

KEY = b"K" * 32
OTHER = b"O" * 32


class MemoryRelay:
    """Answers the core as a relay would: WELCOME to HELLO, DEVICES to GET_DEVICES; it keeps
    the items it delivered and what was acked."""

    def __init__(self, core: ConnectionCore, backlog: int = 0) -> None:
        self.core = core
        self.backlog = backlog
        self.acked = 0
        self.hellos: list[int] = []
        self.requests: list[Frame] = []

    def pump(self, now: float) -> list[object]:
        """Deliver what the core wrote and answer it; return every action the core gave."""
        actions: list[object] = list(self.core.actions())
        frames = self.core.frames_to_send()
        while frames:
            for frame in frames:
                for answer in self._answer(frame):
                    self.core.frame_received(answer, now)
            actions += self.core.actions()
            frames = self.core.frames_to_send()
        return actions

    def _answer(self, frame: Frame) -> list[Frame]:
        if isinstance(frame, Hello):
            self.hellos.append(frame.cursor)
            upto = frame.cursor + self.backlog
            return [Welcome("bob", 1, 1000.0, 86400.0, 65536, self.backlog, upto)]
        if isinstance(frame, GetDevices):
            return [Devices(frame.request_id, frame.account, (1, 2))]
        if isinstance(frame, Ack):
            assert frame.seq > self.acked  # cumulative: never the same or lower twice
            self.acked = frame.seq
            return []
        self.requests.append(frame)
        return []


def new_core(**kw: object) -> ConnectionCore:
    args: dict[str, object] = {"rng": lambda: 0.5, "reconnect": (1.0, 8.0)}
    args.update(kw)
    return ConnectionCore("bob", "ws://relay/v1", KEY, **args)  # type: ignore[arg-type]


def open_session(core: ConnectionCore, relay: MemoryRelay, now: float) -> list[object]:
    core.start(now) if core.state is State.IDLE else core.handle_timer(now)
    actions = relay.pump(now)
    assert OpenConnection("ws://relay/v1") in actions
    core.handshake_done(KEY, "IK", now)
    return relay.pump(now)


def deliver(seq: int) -> Deliver:
    return Deliver(seq, 0, "alice", 1, seq.to_bytes(16, "big"), 1.0, 2.0, b"x")


def test_a_session_opens_with_hello_welcome_and_the_own_devices() -> None:
    core = new_core(cursor=7)
    relay = MemoryRelay(core)
    actions = open_session(core, relay, 10.0)
    assert relay.hellos == [7]  # HELLO carries the committed cursor
    kinds = [type(a) for a in actions]
    assert kinds == [Welcomed, Connected, Opened]
    assert actions[1] == Connected("IK")
    assert actions[2] == Opened((1, 2))
    assert core.state is State.OPEN and core.next_deadline() is None


def test_frames_before_the_session_opens_are_dropped_but_delivers_flow_from_welcome() -> None:
    core = new_core()
    core.start(0.0)
    core.actions()
    core.frame_received(deliver(1), 0.0)  # before the handshake: nothing to do with it
    assert core.actions() == []
    core.handshake_done(KEY, "XX", 0.0)
    core.frame_received(Welcome("bob", 1, 0.0, 1.0, 1, 0, 0), 0.0)
    core.actions()
    core.frame_received(deliver(1), 0.0)  # EXPECT_DEVICES: DELIVERs already flow
    core.frame_received(Sent(b"m" * 16, 1.0), 0.0)  # the outbox waits for the open session
    assert core.actions() == [Incoming(deliver(1))]


def test_committed_delivers_are_acked_once_cumulatively_and_hello_resumes_there() -> None:
    core = new_core()
    relay = MemoryRelay(core)
    open_session(core, relay, 0.0)
    for seq in (1, 2, 3):
        core.frame_received(deliver(seq), 0.1)
        core.stored(seq)
    assert core.frames_to_send() == []  # not before the commit
    core.committed(0.2)
    assert core.frames_to_send() == [Ack(3)]
    core.committed(0.3)  # nothing new: no second ACK
    assert core.frames_to_send() == []

    core.frame_received(deliver(4), 0.4)
    core.stored(4)
    core.aborted()  # the batch was rolled back: 4 is not acked
    core.committed(0.5)
    assert core.frames_to_send() == []

    core.connection_lost(0, "connection lost", False, 1.0)
    core.handle_timer(core.next_deadline() or 0.0)
    relay.pump(2.0)
    core.handshake_done(KEY, "IK", 2.0)
    relay.pump(2.0)
    assert relay.hellos == [0, 3]


def test_backoff_deadlines_grow_to_the_cap_and_a_session_that_lasted_resets_them() -> None:
    core = new_core(rng=lambda: 0.999999)
    core.start(0.0)
    core.actions()
    deadlines = []
    now = 0.0
    for _ in range(6):
        core.connect_failed("connection refused", now)
        failed = core.actions()
        assert isinstance(failed[0], ConnectFailed) and failed[0].reason == "connection refused"
        deadline = core.next_deadline()
        assert deadline is not None
        deadlines.append(round(deadline - now, 3))
        core.handle_timer(deadline - 0.001)  # early: nothing happens
        assert core.state is State.BACKOFF
        now = deadline
        core.handle_timer(now)
        assert core.actions() == [OpenConnection("ws://relay/v1")]
    assert deadlines == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]

    relay = MemoryRelay(core)
    core.handshake_done(KEY, "IK", now)
    relay.pump(now)
    core.connection_lost(14, "keepalive timeout", False, now + 60.0)  # lasted a minute
    assert core.next_deadline() == pytest.approx(now + 60.0 + 1.0, abs=1e-3)


def test_reconnect_now_skips_the_backoff_even_during_a_failing_attempt() -> None:
    core = new_core()
    core.start(0.0)
    core.actions()
    core.reconnect_now(0.5)  # during the attempt: remembered
    core.connect_failed("no answer within 10 s", 10.0)
    actions = core.actions()
    assert actions == [
        ConnectFailed("no answer within 10 s", 1, 0.0),
        OpenConnection("ws://relay/v1"),
    ]
    core.connect_failed("refused", 11.0)
    assert core.state is State.BACKOFF  # no hint this time
    core.reconnect_now(11.5)
    assert (
        core.actions()[-1] == OpenConnection("ws://relay/v1") and core.state.value == "connecting"
    )


def test_another_relay_key_is_fatal_unless_accepted() -> None:
    core = new_core()
    core.start(0.0)
    core.actions()
    core.handshake_done(OTHER, "XX", 0.0)
    actions = core.actions()
    assert isinstance(actions[0], Disconnected) and actions[0].fatal
    assert "another key than the one pinned" in actions[0].reason
    assert isinstance(actions[1], CloseConnection)
    assert core.frames_to_send() == []  # no HELLO to that relay
    core.connection_lost(0, "", False, 1.0)
    assert core.state is State.FATAL and core.next_deadline() is None

    accepting = new_core(accept_new_key=True)
    accepting.start(0.0)
    accepting.actions()
    accepting.handshake_done(OTHER, "XX", 0.0)
    assert accepting.actions() == [PinServerKey(OTHER)]
    assert accepting.frames_to_send() == [Hello(2, 0)]


def test_the_first_contact_pins_the_key() -> None:
    core = ConnectionCore("bob", "ws://relay/v1", None, rng=lambda: 0.5)
    core.start(0.0)
    core.actions()
    core.handshake_done(KEY, "XX", 0.0)
    assert core.actions() == [PinServerKey(KEY)]


def test_requests_are_matched_by_id_and_lost_with_the_connection() -> None:
    core = new_core()
    relay = MemoryRelay(core)
    with pytest.raises(LocalProtocolError):
        core.request(LinkCodeRequest)  # no session yet
    open_session(core, relay, 0.0)
    a, b, c = (core.request(LinkCodeRequest) for _ in range(3))
    relay.pump(0.0)
    assert relay.requests == [LinkCodeRequest(a), LinkCodeRequest(b), LinkCodeRequest(c)]
    core.frame_received(LinkCode(b, b"c" * 16, 5.0), 0.1)
    core.frame_received(RequestFailed(a, int(ErrorCode.RATE_LIMITED), "slow down", 2.0), 0.1)
    core.frame_received(LinkCode(999, b"c" * 16, 5.0), 0.1)  # answers nothing: ignored
    core.frame_received(LinkCode(b, b"d" * 16, 5.0), 0.1)  # answered already: ignored
    assert core.actions() == [
        Answered(b, LinkCode(b, b"c" * 16, 5.0)),
        RequestRefused(RequestFailed(a, int(ErrorCode.RATE_LIMITED), "slow down", 2.0)),
    ]
    core.connection_lost(0, "connection lost", False, 0.2)
    actions = core.actions()
    assert RequestsLost((c,)) in actions
    core.frame_received(LinkCode(c, b"c" * 16, 5.0), 0.3)  # too late: the connection is gone
    assert core.actions() == []


def test_unsolicited_devices_of_this_account_reach_the_client() -> None:
    core = new_core()
    open_session(core, MemoryRelay(core), 0.0)
    core.frame_received(Devices(0, "bob", (1, 2, 3)), 1.0)
    core.frame_received(Devices(0, "mallory", (9,)), 1.0)
    assert core.actions() == [Incoming(Devices(0, "bob", (1, 2, 3)))]


@pytest.mark.parametrize("code", [ErrorCode.UNKNOWN_DEVICE, ErrorCode.UNSUPPORTED_VERSION])
def test_a_refusal_for_good_stops_reconnecting(code: ErrorCode) -> None:
    core = new_core()
    core.start(0.0)
    core.actions()
    core.connection_lost(int(code), "no such device", True, 0.5)
    actions = core.actions()
    assert actions == [Disconnected(int(code), "no such device", True)]
    assert core.state is State.FATAL and core.fatal == actions[0]
    assert core.next_deadline() is None


def test_a_close_before_the_session_opened_is_a_failed_attempt_with_the_relays_reason() -> None:
    core = new_core()
    core.start(0.0)
    core.actions()
    core.handshake_done(KEY, "IK", 0.0)
    core.connection_lost(int(ErrorCode.SHUTTING_DOWN), "the relay is stopping", True, 0.5)
    actions = core.actions()
    assert actions[0] == Disconnected(int(ErrorCode.SHUTTING_DOWN), "the relay is stopping")
    assert isinstance(actions[1], ConnectFailed)
    assert actions[1].reason == "the relay closed the connection: the relay is stopping"
    assert core.state is State.BACKOFF


def test_a_lost_open_session_is_no_failed_attempt() -> None:
    core = new_core()
    open_session(core, MemoryRelay(core), 0.0)
    core.connection_lost(14, "keepalive timeout", False, 3.0)
    assert core.actions() == [Disconnected(14, "keepalive timeout")]
    assert core.next_deadline() == pytest.approx(3.5)  # rng 0.5 of the first ceiling, 1 s


def test_catch_up_progress_counts_only_committed_items() -> None:
    core = new_core()
    relay = MemoryRelay(core, backlog=4)
    actions = open_session(core, relay, 0.0)
    assert CatchingUp(0, 4, 0.0, False) in actions
    for seq in (1, 2):
        core.stored(seq)
    core.committed(1.0)  # a report is due (0.5 s interval)
    assert core.actions() == [CatchingUp(2, 4, 2.0, False)]
    for seq in (3, 4):
        core.stored(seq)
    core.committed(1.1)  # the finish is always reported
    assert core.actions() == [CatchingUp(4, 4, 4 / 1.1, True)]


def test_halt_and_close_end_it_for_good() -> None:
    core = new_core()
    open_session(core, MemoryRelay(core), 0.0)
    core.halt("disk full")
    assert core.actions() == [CloseConnection("disk full")]
    core.connection_lost(0, "connection lost", False, 1.0)
    assert core.actions() == [Disconnected(0, "connection lost", True)]
    assert core.state is State.CLOSED and core.next_deadline() is None
    core.reconnect_now(2.0)
    core.handle_timer(100.0)
    assert core.actions() == []

    idle = new_core()
    idle.close()
    assert idle.actions() == [] and idle.state is State.CLOSED


def test_every_state_is_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(State)
    assert all(targets <= set(State) for targets in TRANSITIONS.values())


@pytest.mark.parametrize("module", [core_module, core_actions])
def test_the_core_does_no_io(module: object) -> None:
    """No asyncio, sockets, store or clock: what CONVENTIONS §1 asks of a protocol core."""
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "enum", "collections", "dataclasses"}
    relative = {
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level > 0 and n.module is not None
    }
    allowed = {"errors", "wire", "catchup", "core_actions", "events", "reconnect", "relays"}
    assert relative <= allowed
