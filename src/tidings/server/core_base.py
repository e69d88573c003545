"""The machinery of the relay's connection core: states, the frame queue, store commands and
their continuations, the outputs. The rules live in :mod:`.core` and :mod:`.core_prekeys`.

A decision that needs the store *asks* (:meth:`CoreBase._ask`): it queues a
:data:`~tidings.server.core_actions.StoreCommand` and names the method that continues with its
result. A *blocking* ask holds the frames after it until its result came back and was acted on
(REGISTER, HELLO, reads that answer a request: what the old worker awaited); a non-blocking ask
(a send's commit, an ACK's deletion, a delivery page) lets the next frames go on, so the sends
of one read reach the store together and share its commit. Every ask is answered in the order
it was queued, as the store runs them.

Invariants:

* Inputs never raise for what the peer or the store did: a violation or a failure becomes
  ERROR + close (:class:`~tidings.server.core_actions.CloseConnection`), and the state is
  ``CLOSED`` from then on (sticky). No frame is queued after it.
* After the close, the continuations of non-blocking asks still run (a committed send still
  goes to its recipients' sessions), those of blocking asks are dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from ..errors import StoreUnavailable
from ..store import DeviceRef, QueueFull
from ..wire import ErrorCode, Frame, FrameType, RequestFailed
from .config import ServerConfig
from .core_actions import (
    INFO,
    WARNING,
    Action,
    CloseConnection,
    Failure,
    Log,
    StoreCommand,
    StoreOp,
    StoreTrouble,
)
from .limits import Limits
from .sealed_certs import CertIssuer

__all__ = ["ALLOWED", "INTERNAL_RETRY_AFTER", "CoreBase", "State"]

#: Seconds a client is asked to wait after the store failed a request.
INTERNAL_RETRY_AFTER = 1.0


class State(enum.Enum):
    """Where a connection is in its protocol."""

    HANDSHAKE = "handshake"
    EXPECT_HELLO = "expect-hello"
    REGISTERING = "registering"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    #: an NK session (docs/protocol.md §14): nobody in particular, only sealed frames
    UNIDENTIFIED = "unidentified"
    CLOSED = "closed"


#: The legal client frames in each state: the spec of the session. A state is only looked up
#: between two decisions, so the transient REGISTERING and AUTHENTICATING need no row. PING is
#: legal in both: it is answered in order with the frames before it (protocol §7).
ALLOWED: dict[State, frozenset[FrameType]] = {
    State.EXPECT_HELLO: frozenset({FrameType.HELLO, FrameType.REGISTER, FrameType.PING}),
    State.OPEN: frozenset(
        {
            FrameType.PING,
            FrameType.SEND,
            FrameType.ACK,
            FrameType.GET_DEVICES,
            FrameType.LINK_CODE_REQUEST,
            FrameType.PREKEYS_UPLOAD,
            FrameType.PREKEY_FETCH,
            FrameType.PUSH_REGISTER,
            FrameType.PUSH_UNREGISTER,
            FrameType.PUSH_QUERY,
            FrameType.UNLINK,
            FrameType.MULTI_SEND,
            FrameType.DEVICE_QUERY,
            FrameType.SENDER_CERT_REQUEST,
            FrameType.SET_ACCESS_KEY,
            FrameType.TAG_QUERY,  # legal, if unwise: it ties the tags to the device (§6.35)
        }
    ),
    # An unidentified (NK) session may only send what needs no sender (protocol §14); a
    # SEALED_SEND on an authenticated one would name its sender: there it is UNEXPECTED_FRAME.
    State.UNIDENTIFIED: frozenset(
        {FrameType.PING, FrameType.SEALED_SEND, FrameType.SEALED_MULTI_SEND, FrameType.TAG_QUERY}
    ),
}

#: What continues a decision with a store result.
Then = Callable[[Any], None]
#: What handles a store failure (``None``: the default, ERROR and close).
OnError = Callable[[Exception], None] | None


class CoreBase:
    """State, queue, asks and outputs of one connection (see the module docstring).

    Args:
        config: the relay's configuration (limits of payloads, queues, windows, retention).
        limits: the relay's budgets (shared by every connection; sans-I/O, fed ``mono``).
        random_bytes: the source of link codes.
        store_retry_after: the seconds a client is asked to wait when the store cannot write
            (the relay probes it that often, :mod:`.health`).
        queue_full_retry_after: the seconds a sender is asked to wait when a recipient's queue
            is full.
    """

    # Slots: one core lives per connection, idle or not (issue 10: bytes per connection).
    __slots__ = (
        "_actions",
        "_blocking",
        "_close",
        "_commands",
        "_frame_type",
        "_frames",
        "_last_id",
        "_queue",
        "_waiting",
        "config",
        "device",
        "issuer",
        "limits",
        "mono",
        "noise_key",
        "now",
        "peer_ip",
        "queue_full_retry_after",
        "random_bytes",
        "state",
        "store_retry_after",
    )

    def __init__(
        self,
        config: ServerConfig,
        limits: Limits,
        random_bytes: Callable[[int], bytes],
        *,
        store_retry_after: float,
        queue_full_retry_after: float,
        issuer: CertIssuer | None = None,
    ) -> None:
        self.config = config
        #: Signs sender certificates (sealed sender); ``None``: this relay issues none.
        self.issuer = issuer
        self.store_retry_after = store_retry_after
        self.queue_full_retry_after = queue_full_retry_after
        self.limits = limits
        self.random_bytes = random_bytes
        self.state = State.HANDSHAKE
        self.noise_key: bytes | None = None
        #: The device of this connection, once HELLO found it.
        self.device: DeviceRef | None = None
        #: The client's address (the proxy's header when configured): per-address budgets.
        self.peer_ip: str | None = None
        #: The wall-clock and monotonic times of the input being handled.
        self.now = 0.0
        self.mono = 0.0
        self._frames: list[Frame] = []
        self._commands: list[StoreCommand] = []
        self._actions: list[Action] = []
        self._close: CloseConnection | None = None
        # Frames waiting behind a blocking ask (a list: mostly empty, and an empty deque costs
        # ~700 bytes per idle connection).
        self._queue: list[Frame] = []
        self._waiting: dict[int, tuple[Then, OnError, bool]] = {}
        self._blocking = 0  # blocking asks not yet answered
        self._last_id = 0
        self._frame_type: FrameType = FrameType.HELLO  # of the decision in progress

    # ---------------------------------------------------------------- outputs

    def frames_to_send(self) -> list[Frame]:
        """The frames to write on this connection, in order (drain after every input; do not
        change the list)."""
        out = self._frames
        if out:
            self._frames = []
        return out

    @property
    def has_actions(self) -> bool:
        """Whether :meth:`actions` has anything (a cheap test for the adapter's pump)."""
        return bool(self._actions) or self._close is not None

    @property
    def has_output(self) -> bool:
        """Whether any of the outputs has something (the adapter pumps until it has not)."""
        return bool(self._frames or self._commands or self._actions) or self._close is not None

    def store_commands(self) -> list[StoreCommand]:
        """The store commands to run, in this order (drain after every input; do not change
        the list)."""
        out = self._commands
        if out:
            self._commands = []
        return out

    def actions(self) -> list[Action]:
        """What to do outside the connection, in order; a close comes last, once, after the
        frames queued before it (drain after every input)."""
        out, self._actions = self._actions, []
        if self._close is not None:
            out.append(self._close)
            self._close = None
        return out

    def next_deadline(self) -> float | None:
        """Always ``None``: the connection's timers (keepalive, the HELLO deadline) are the
        channel's; no rule of the core waits for time."""
        return None

    # ---------------------------------------------------------------- store results

    def stored(self, command_id: int, result: object, now: float, mono: float) -> None:
        """The store answered command ``command_id`` with ``result``."""
        waiting = self._answered(command_id, now, mono)
        if waiting is not None:
            then, _, _ = waiting
            self._guard(then, result)
        self._run_queue()

    def store_failed(self, command_id: int, exc: Exception, now: float, mono: float) -> None:
        """The store failed command ``command_id`` with ``exc``."""
        waiting = self._answered(command_id, now, mono)
        if waiting is not None:
            _, on_error, _ = waiting
            self._guard(on_error or self._failed, exc)
        self._run_queue()

    def _answered(
        self, command_id: int, now: float, mono: float
    ) -> tuple[Then, OnError, bool] | None:
        self.now, self.mono = now, mono
        waiting = self._waiting.pop(command_id, None)
        if waiting is None:
            return None
        if waiting[2]:
            self._blocking -= 1
            if self.state is State.CLOSED:
                return None  # the decision it continued ended with the connection
        return waiting

    # ---------------------------------------------------------------- machinery

    def _ask(self, op: StoreOp, then: Then, on_error: OnError = None, *, block: bool) -> None:
        """Queue ``op`` for the store; ``then(result)`` or ``on_error(exc)`` continues."""
        self._last_id += 1
        self._commands.append((self._last_id, op))
        self._waiting[self._last_id] = (then, on_error, block)
        if block:
            self._blocking += 1

    def _receive(self, frame: Frame) -> None:
        if self.state is State.CLOSED:
            return
        if self._blocking or self._queue:  # in order: after the decisions before it
            self._queue.append(frame)
            return
        self._decide_one(frame)

    def _run_queue(self) -> None:
        """Decide the queued frames in order, as long as no decision waits for the store."""
        queue = self._queue
        while queue and not self._blocking and self.state is not State.CLOSED:
            self._decide_one(queue.pop(0))

    def _decide_one(self, frame: Frame) -> None:
        if frame.TYPE not in ALLOWED.get(self.state, ()):
            self._violation(ErrorCode.UNEXPECTED_FRAME, "frame not allowed now", frame.TYPE)
            return
        self._frame_type = frame.TYPE
        self._guard(self._decide, frame)

    def _decide(self, frame: Frame) -> None:
        """Run the handler of ``frame`` (the subclass's table)."""
        raise NotImplementedError

    def _guard(self, step: Then, value: object) -> None:
        """Run one step of a decision; a bug in it closes the connection, never the relay."""
        try:
            step(value)
        except Exception as exc:
            self._actions.append(Failure(f"! internal error handling {self._frame_type.name}", exc))
            self._violation(ErrorCode.INTERNAL, "internal server error", self._frame_type)

    def _failed(self, exc: Exception) -> None:
        """The default for a failed ask: ERROR STORE_UNAVAILABLE or INTERNAL, and close."""
        if isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
            self._actions.append(StoreTrouble(exc))
            self._close_with(
                ErrorCode.STORE_UNAVAILABLE, "store unavailable; retry later", self._frame_type
            )
            return
        raise exc  # _guard: logged, INTERNAL

    def _send(self, frame: Frame) -> None:
        if self.state is not State.CLOSED:
            self._frames.append(frame)

    def _queue_full_reason(self, full: QueueFull, who: object) -> str:
        """The reason of a QUEUE_FULL refusal: ``who``'s queue, at the limit or the strangers'
        share of it (every kind of send says it the same way)."""
        whose = "" if full.limit == self.config.max_queue else " for new senders"
        return f"queue of {who} is full{whose} ({full.limit} items)"

    def _log(self, message: str) -> None:
        self._actions.append(Log(INFO, message))

    def _violation(self, code: ErrorCode, reason: str, frame_type: int) -> None:
        """ERROR ``code`` and close. ``frame_type`` is the type of the frame that caused it
        (every violation is caused by one; ERROR carries it, protocol §6.14)."""
        self._actions.append(Log(WARNING, f"! {code.name}: {reason}"))
        self._close_with(code, reason, frame_type)

    def _close_with(self, code: ErrorCode, reason: str, frame_type: int) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._queue.clear()
        self._close = CloseConnection(int(code), reason, int(frame_type))

    def request_failed(
        self, request_id: int, code: ErrorCode, reason: str, retry_after: float = 0.0
    ) -> None:
        """Answer request ``request_id`` REQUEST_FAILED (INTERNAL: retry after a second)."""
        if code is ErrorCode.INTERNAL:
            retry_after = INTERNAL_RETRY_AFTER
        self._log(f"! request {request_id} failed: {code.name} {reason}")
        self._send(RequestFailed(request_id, int(code), reason, retry_after))
