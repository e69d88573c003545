"""The device's connection protocol as a synchronous state machine (sans-I/O, pure time).

One :class:`ConnectionCore` per device. It decides everything about the device's connection to
its relay — when to (re)connect, whether the relay's key is the pinned one, HELLO and its
cursor, WELCOME and the catch-up it announces, the own-devices query that opens the session,
request ids and their answers, the cumulative ACK of committed DELIVERs, what a close means —
and does none of it: no sockets, no asyncio, no store, no clock. Three sources of input:

* the adapter's reports: :meth:`connection_made`, :meth:`handshake_done`,
  :meth:`frame_received`, :meth:`connection_lost`, :meth:`connect_failed`;
* the client's commands: :meth:`start`, :meth:`reconnect_now`, :meth:`request`,
  :meth:`stored` / :meth:`committed` (the inbox's batch), :meth:`halt`, :meth:`close`;
* the timer: :meth:`handle_timer` at :meth:`next_deadline`.

After each call the adapter drains :meth:`frames_to_send` (in order, onto the current
connection) and :meth:`actions` (what to do: :class:`OpenConnection`, :class:`CloseConnection`,
:class:`PinServerKey`, answers, frames for the client's handlers, and the public events
:class:`~tidings.client.events.Connected`, :class:`~tidings.client.events.ConnectFailed`,
:class:`~tidings.client.events.Disconnected`, :class:`~tidings.client.events.CatchingUp`).
``now`` is always the monotonic clock: the backoff and the catch-up rate must not jump with
the wall clock.

States and their transitions (:data:`TRANSITIONS` is the spec)::

    IDLE ─start→ CONNECTING ─handshake ok→ EXPECT_WELCOME ─WELCOME→ EXPECT_DEVICES ─DEVICES→ OPEN
                     │  ↑                        │                      │                 │
                     │  └──── deadline ────── BACKOFF ←── lost / failed ┴─────────────────┘
                     └→ FATAL (key changed, refused for good)     any ─halt/close→ CLOSED
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from ..errors import LocalProtocolError
from ..wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    DeviceDetails,
    Devices,
    ErrorCode,
    Frame,
    GetDevices,
    Hello,
    LinkCode,
    MultiSent,
    PrekeyBundle,
    PrekeysStored,
    PushStatus,
    RequestFailed,
    SenderCert,
    Welcome,
)
from .catchup import CatchUp
from .core_actions import (
    Action,
    Answered,
    CloseConnection,
    Incoming,
    OpenConnection,
    Opened,
    PinServerKey,
    RequestRefused,
    RequestsLost,
    Welcomed,
)
from .events import Connected, ConnectFailed, Disconnected
from .reconnect import RECONNECT_BASE, RECONNECT_CAP, Reconnect
from .relays import RelayNodes

__all__ = [
    "FATAL_CODES",
    "TRANSITIONS",
    "Answered",
    "CloseConnection",
    "ConnectionCore",
    "Incoming",
    "OpenConnection",
    "Opened",
    "PinServerKey",
    "RequestRefused",
    "RequestsLost",
    "State",
    "Welcomed",
]

#: Close codes after which reconnecting cannot help; the client stops and reports them.
FATAL_CODES = frozenset({ErrorCode.UNKNOWN_DEVICE, ErrorCode.UNSUPPORTED_VERSION})

#: Frames that answer a request (matched by request id, never passed on).
_ANSWERS = (
    Devices,
    LinkCode,
    PrekeyBundle,
    PrekeysStored,
    PushStatus,
    MultiSent,
    DeviceDetails,
    SenderCert,
)


class State(enum.Enum):
    IDLE = "idle"  #: not started
    CONNECTING = "connecting"  #: the adapter opens TCP, WebSocket and the Noise handshake
    EXPECT_WELCOME = "expect-welcome"  #: HELLO sent
    EXPECT_DEVICES = "expect-devices"  #: WELCOME received, the own devices asked for
    OPEN = "open"  #: the session is open: the outbox may send, requests may go
    BACKOFF = "backoff"  #: waiting until next_deadline() to connect again
    FATAL = "fatal"  #: refused for good, or the relay's key changed: no reconnect
    CLOSED = "closed"  #: closed by the client, or halted (the store cannot write)


#: The legal transitions: the spec of the connection protocol.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.CONNECTING, State.CLOSED}),
    State.CONNECTING: frozenset({State.EXPECT_WELCOME, State.BACKOFF, State.FATAL, State.CLOSED}),
    State.EXPECT_WELCOME: frozenset(
        {State.EXPECT_DEVICES, State.BACKOFF, State.FATAL, State.CLOSED}
    ),
    State.EXPECT_DEVICES: frozenset({State.OPEN, State.BACKOFF, State.FATAL, State.CLOSED}),
    State.OPEN: frozenset({State.BACKOFF, State.FATAL, State.CLOSED}),
    State.BACKOFF: frozenset({State.CONNECTING, State.CLOSED}),
    State.FATAL: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

#: States in which a connection exists (the adapter holds one).
_CONNECTED = frozenset({State.EXPECT_WELCOME, State.EXPECT_DEVICES, State.OPEN})


class ConnectionCore:
    """The connection protocol of one device (see the module docstring).

    Args:
        account: this device's account (the own-devices query names it).
        server_url: the relay's URL (its preferred one, when it has several).
        pinned_key: the relay's static key pinned at registration (``None``: none yet).
        accept_new_key: accept a relay whose key differs from the pinned one (and pin it).
        cursor: the highest seq committed to the store (HELLO's cursor).
        rng: uniform floats in ``[0, 1)``: the backoff's jitter.
        reconnect: the backoff's first and largest delay ceilings, in seconds.
        catchup: the catch-up progress reporter.
        alternates: the relay's other URLs (its other nodes), in order of preference; every
            node presents the one pinned key (:mod:`tidings.client.relays` picks the URL).
    """

    def __init__(
        self,
        account: str,
        server_url: str,
        pinned_key: bytes | None,
        *,
        cursor: int = 0,
        accept_new_key: bool = False,
        rng: Callable[[], float],
        reconnect: tuple[float, float] = (RECONNECT_BASE, RECONNECT_CAP),
        catchup: CatchUp | None = None,
        alternates: Sequence[str] = (),
    ) -> None:
        self.account = account
        #: The relay's URLs and the one the next attempt connects to.
        self.relays = RelayNodes((server_url, *alternates))
        self.pinned_key = pinned_key
        self.accept_new_key = accept_new_key
        #: The highest seq committed to the store; HELLO sends it, ACK follows it.
        self.cursor = cursor
        self.state = State.IDLE
        self.backoff = Reconnect(rng, *reconnect)
        self.catchup = catchup or CatchUp()
        #: The Noise pattern of the current connection (``XX`` or ``IK``).
        self.pattern = ""
        #: Why the client stopped for good (``FATAL``), as the Disconnected event said.
        self.fatal: Disconnected | None = None
        self._acked = 0  # the highest seq acked on this connection (HELLO's cursor counts)
        self._stored = 0  # the highest seq stored in the batch being committed
        self._deadline: float | None = None
        self._last_request = 0
        self._pending: set[int] = set()
        self._own_request = 0  # the own-devices query of the opening session
        self._close_reason = ""  # how the current connection ended, if someone said why
        self._halted = False  # halt(): the store cannot write
        self._hinted = False  # reconnect_now() came during this attempt or session
        self._frames: list[Frame] = []
        self._actions: list[Action] = []

    # ---------------------------------------------------------------- outputs

    def frames_to_send(self) -> list[Frame]:
        """Frames for the current connection, in order (call after every input)."""
        out, self._frames = self._frames, []
        return out

    def actions(self) -> list[Action]:
        """What the adapter must do and report, in order (call after every input)."""
        out, self._actions = self._actions, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called (the end of a backoff), or ``None``."""
        return self._deadline

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def server_url(self) -> str:
        """The URL of the current (or next) attempt: the node this device is on."""
        return self.relays.current

    # ---------------------------------------------------------------- commands

    def start(self, now: float) -> None:
        """Start connecting."""
        if self.state is State.IDLE:
            self._connect()

    def reconnect_now(self, now: float) -> None:
        """Cut the backoff short (the network came back). During an attempt or a session,
        the wait after it ends is skipped (the hint is not lost to an attempt that fails)."""
        if self.state is State.BACKOFF:
            self._connect()
        elif self.state in _CONNECTED or self.state is State.CONNECTING:
            self._hinted = True

    def handle_timer(self, now: float) -> None:
        """The deadline of :meth:`next_deadline` passed."""
        if self.state is State.BACKOFF and self._deadline is not None and now >= self._deadline:
            self._connect()

    def request(self, build: Callable[[int], Frame]) -> int:
        """Send ``build(request_id)`` on the open session; its answer is an :class:`Answered`
        (or :class:`RequestRefused`, or :class:`RequestsLost`) naming the returned id.

        Raises:
            LocalProtocolError: no session is open.
        """
        if self.state is not State.OPEN:
            raise LocalProtocolError(
                ErrorCode.UNEXPECTED_FRAME, f"no open session for a request ({self.state.value})"
            )
        return self._request(build)

    def stored(self, seq: int) -> None:
        """The DELIVER ``seq`` is stored in the batch being committed (not acked before
        :meth:`committed`)."""
        self._stored = max(self._stored, seq)
        self.catchup.stored(seq)

    def committed(self, now: float) -> None:
        """The batch committed: ack what it stored (one cumulative ACK), report progress."""
        if self._stored > self.cursor:
            self.cursor = self._stored
        if self.state in _CONNECTED and self.cursor > self._acked:
            self._acked = self.cursor
            self._frames.append(Ack(self.cursor))
        if self.catchup.active:
            report = self.catchup.report(now)
            if report is not None:
                self._actions.append(report)

    def aborted(self) -> None:
        """The batch was rolled back: what it stored is not acked."""
        self._stored = self.cursor

    def halt(self, why: str) -> None:
        """Stop for good (the store cannot write): close the connection, never reconnect."""
        self._halted = True
        self._end(State.CLOSED, why)

    def close(self) -> None:
        """The client closes: close the connection, no reconnect."""
        self._end(State.CLOSED, "the client is closed")

    # ---------------------------------------------------------------- the adapter's reports

    def connection_made(self) -> None:
        """The connection is open and the Noise handshake starts (nothing to do yet)."""

    def handshake_done(self, remote_static: bytes, pattern: str, now: float) -> None:
        """The Noise handshake completed with a relay presenting ``remote_static``."""
        if self.state is not State.CONNECTING:
            return
        changed = self.pinned_key is not None and self.pinned_key != remote_static
        if changed and not self.accept_new_key:
            reason = (
                f"the relay at {self.server_url} presents another key than the one pinned "
                "at registration (another relay at this address, its server.key was replaced, "
                "or a node of it without the relay's server.key): ask its operator; this "
                "device does not connect to it"
            )
            self.fatal = Disconnected(int(ErrorCode.HANDSHAKE_FAILED), reason, fatal=True)
            self._actions.append(self.fatal)
            self._go(State.FATAL)
            self._actions.append(CloseConnection(reason))
            return
        if self.pinned_key != remote_static:
            self.pinned_key = remote_static
            self._actions.append(PinServerKey(remote_static))
        self.pattern = pattern
        self._acked = self._stored = self.cursor
        self._frames.append(Hello(PROTOCOL_VERSION, self.cursor))
        self._go(State.EXPECT_WELCOME)

    def frame_received(self, frame: Frame, now: float) -> None:
        """A frame arrived on the current connection."""
        if self.state not in _CONNECTED:
            return
        if isinstance(frame, _ANSWERS):
            self._answer(frame, now)
        elif isinstance(frame, RequestFailed):
            if frame.request_id in self._pending:
                self._pending.discard(frame.request_id)
                self._actions.append(RequestRefused(frame))
        elif isinstance(frame, Welcome):
            self._welcome(frame, now)
        elif isinstance(frame, Deliver) or self.state is State.OPEN:
            # DELIVERs flow from WELCOME on; the rest only matters to an open session.
            self._actions.append(Incoming(frame))

    def connection_lost(self, code: int, reason: str, by_peer: bool, now: float) -> None:
        """The connection closed: ``code`` and ``reason`` as the channel reported them (a
        relay's ERROR when ``by_peer``)."""
        if self.state in (State.CLOSED, State.FATAL, State.BACKOFF, State.IDLE):
            self._lost_requests()
            if self.state is State.CLOSED and self._halted:
                self._actions.append(Disconnected(code, reason, fatal=True))
            return
        opened = self.state is State.OPEN
        if opened:
            self.relays.session_ended(now)
        else:
            self.relays.attempt_failed(now)
        if reason:
            self._close_reason = ("the relay closed the connection: " if by_peer else "") + reason
        fatal = by_peer and code in FATAL_CODES
        event = Disconnected(code, reason, fatal)
        self._lost_requests()
        self.catchup.stop()
        if fatal:
            self.fatal = event
            self._actions.append(event)
            self._go(State.FATAL)
            return
        self._actions.append(event)
        failure = (
            ""
            if opened
            else self._close_reason or "the connection closed before the session opened"
        )
        self._back_off(failure, now)

    def connect_failed(self, reason: str, now: float) -> None:
        """No connection could be opened (``reason``: why, in one line)."""
        if self.state is State.CONNECTING:
            self.relays.attempt_failed(now)
            self._back_off(reason, now)

    # ---------------------------------------------------------------- internals

    def _connect(self) -> None:
        self._deadline = None
        self._hinted = False
        self._close_reason = ""
        self.pattern = ""
        self._go(State.CONNECTING)
        self._actions.append(OpenConnection(self.relays.current))

    def _back_off(self, failure: str, now: float) -> None:
        delay = self.backoff.ended(now)
        self._deadline = now + delay
        self._go(State.BACKOFF)
        if failure:
            wait = 0.0 if self._hinted else delay
            self._actions.append(ConnectFailed(failure, self.backoff.attempt, wait))
        if self._hinted:
            self._connect()

    def _welcome(self, frame: Welcome, now: float) -> None:
        if self.state is not State.EXPECT_WELCOME:
            return
        self._actions.append(Welcomed(frame))
        self._actions.append(Connected(self.pattern))
        report = self.catchup.start(frame.backlog, frame.backlog_upto, now)
        if report is not None:
            self._actions.append(report)
        self._own_request = self._request(lambda rid: GetDevices(rid, self.account))
        self._go(State.EXPECT_DEVICES)

    def _answer(
        self,
        frame: Devices
        | LinkCode
        | PrekeyBundle
        | PrekeysStored
        | PushStatus
        | MultiSent
        | DeviceDetails
        | SenderCert,
        now: float,
    ) -> None:
        rid = frame.request_id
        if isinstance(frame, PushStatus) and rid == 0:
            # Unsolicited (protocol §6.25): this device's push subscription is dead.
            self._actions.append(Incoming(frame))
            return
        if isinstance(frame, Devices) and rid == 0:
            # Unsolicited (protocol §6.10): a device was linked to this account while the
            # session was open. Request ids start at 1, so 0 answers nothing.
            if frame.account == self.account and self.state is State.OPEN:
                self._actions.append(Incoming(frame))
            return
        if rid not in self._pending:
            return  # an answer to a request of an earlier connection, or to none
        self._pending.discard(rid)
        if rid == self._own_request and isinstance(frame, Devices):
            self._own_request = 0
            self.backoff.opened(now)
            self._go(State.OPEN)
            self._actions.append(Opened(frame.device_ids))
            return
        self._actions.append(Answered(rid, frame))

    def _request(self, build: Callable[[int], Frame]) -> int:
        self._last_request += 1
        rid = self._last_request
        self._pending.add(rid)
        self._frames.append(build(rid))
        return rid

    def _lost_requests(self) -> None:
        if self._pending:
            lost = tuple(sorted(self._pending - {self._own_request}))
            self._pending.clear()
            if lost:
                self._actions.append(RequestsLost(lost))
        self._own_request = 0

    def _end(self, state: State, why: str) -> None:
        if self.state is State.CLOSED:
            return
        had_connection = self.state in _CONNECTED or self.state is State.CONNECTING
        self._deadline = None
        self._go(state)
        if had_connection:
            self._actions.append(CloseConnection(why))
        self._frames.clear()

    def _go(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise LocalProtocolError(
                ErrorCode.UNEXPECTED_FRAME, f"connection core: {self.state.value} → {state.value}"
            )
        self.state = state
