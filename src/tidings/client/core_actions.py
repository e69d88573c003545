"""What the connection core (:mod:`tidings.client.core`) asks its adapter to do and tells it:
the actions drained by :meth:`ConnectionCore.actions`, beside the public events it also gives
(:class:`~tidings.client.events.Connected`, ``ConnectFailed``, ``Disconnected``,
``CatchingUp``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import Frame, RequestFailed, Welcome
from .events import CatchingUp, Connected, ConnectFailed, Disconnected

__all__ = [
    "Action",
    "Answered",
    "CloseConnection",
    "Incoming",
    "OpenConnection",
    "Opened",
    "PinServerKey",
    "RequestRefused",
    "RequestsLost",
    "Welcomed",
]


@dataclass(frozen=True, slots=True)
class OpenConnection:
    """Open a connection to the relay at ``url`` now (TCP, WebSocket, Noise); report how it
    went."""

    url: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the current connection (``reason`` for the log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PinServerKey:
    """Store command: pin ``key`` as the relay's static key (first contact, or an accepted
    change). Commit it before anything of the session is acted on."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Welcomed:
    """WELCOME arrived: the relay's clock reads ``server_time`` (wall seconds, for the offset
    estimate); ``frame`` is the whole WELCOME."""

    frame: Welcome


@dataclass(frozen=True, slots=True)
class Opened:
    """The session is open: the account's devices are ``own_devices``; the outbox may send."""

    own_devices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Answered:
    """``frame`` answers request ``request_id``."""

    request_id: int
    frame: Frame


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """The relay refused request ``frame.request_id`` (REQUEST_FAILED)."""

    frame: RequestFailed


@dataclass(frozen=True, slots=True)
class RequestsLost:
    """The connection ended: these requests get no answer (the relay forgot them)."""

    request_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A frame of the session for the client's handlers (DELIVER, SENT, REFUSED, PREKEYS_LOW,
    an unsolicited DEVICES of this account)."""

    frame: Frame


Action = (
    OpenConnection
    | CloseConnection
    | PinServerKey
    | Welcomed
    | Opened
    | Answered
    | RequestRefused
    | RequestsLost
    | Incoming
    | Connected
    | ConnectFailed
    | Disconnected
    | CatchingUp
)
