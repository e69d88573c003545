"""The WebSocket close status code (RFC 6455 §7.4) of every close a tidings endpoint starts.

A tidings connection ends with an ERROR frame (its :class:`~tidings.wire.ErrorCode` says why, §6.14
of docs/protocol.md), then a WebSocket close frame, then TCP. The close frame carries a status
code that WebSocket libraries check: RFC 6455 §7.4.1 defines 1000–1011 (minus the reserved
1004–1006), the IANA registry of §11.7 adds 1012–1014, and 0 is not a code at all (peers such as
Python ``websockets`` and Node ``ws`` report it as a protocol error). :data:`CLOSE_CODES` is the
one table from our close cause to that code; docs/protocol.md §2 repeats it.

Sans-I/O: the table and the two functions are plain data; ``ws.py`` writes what they return.
"""

from __future__ import annotations

import enum

from ..wire import ErrorCode


class WSClose(enum.IntEnum):
    """The WebSocket status codes tidings sends (RFC 6455 §7.4.1; 1013: IANA registry)."""

    NORMAL = 1000  #: the purpose of the connection is fulfilled (a local close, a peer's ERROR)
    GOING_AWAY = 1001  #: the server is going down (or this connection was replaced)
    PROTOCOL_ERROR = 1002  #: the peer broke the protocol (bad frame, bad Noise message)
    POLICY_VIOLATION = 1008  #: the peer broke a rule of this relay (deadline, unknown key)
    MESSAGE_TOO_BIG = 1009  #: a message or frame over its limit
    INTERNAL_ERROR = 1011  #: this side failed
    TRY_AGAIN_LATER = 1013  #: overloaded: reconnect later (IANA-registered, RFC 6455 §11.7)


#: The close code for each error code a side closes with. Total over :class:`ErrorCode`
#: (tests/net/test_closecodes.py checks it), so a new code cannot be forgotten.
CLOSE_CODES: dict[ErrorCode, WSClose] = {
    ErrorCode.MALFORMED_FRAME: WSClose.PROTOCOL_ERROR,
    ErrorCode.FRAME_TOO_LARGE: WSClose.MESSAGE_TOO_BIG,
    ErrorCode.UNEXPECTED_FRAME: WSClose.PROTOCOL_ERROR,
    ErrorCode.UNSUPPORTED_VERSION: WSClose.PROTOCOL_ERROR,
    ErrorCode.UNKNOWN_DEVICE: WSClose.POLICY_VIOLATION,
    ErrorCode.ACCOUNT_EXISTS: WSClose.POLICY_VIOLATION,
    ErrorCode.INVALID_LINK_CODE: WSClose.POLICY_VIOLATION,
    ErrorCode.NO_SUCH_ACCOUNT: WSClose.POLICY_VIOLATION,
    ErrorCode.DEVICE_MISMATCH: WSClose.POLICY_VIOLATION,
    ErrorCode.QUEUE_FULL: WSClose.POLICY_VIOLATION,
    ErrorCode.RATE_LIMITED: WSClose.POLICY_VIOLATION,
    ErrorCode.PAYLOAD_TOO_LARGE: WSClose.MESSAGE_TOO_BIG,
    ErrorCode.INVALID_ACK: WSClose.PROTOCOL_ERROR,
    ErrorCode.KEEPALIVE_TIMEOUT: WSClose.POLICY_VIOLATION,
    ErrorCode.SHUTTING_DOWN: WSClose.GOING_AWAY,
    ErrorCode.INTERNAL: WSClose.INTERNAL_ERROR,
    ErrorCode.KEY_ALREADY_REGISTERED: WSClose.POLICY_VIOLATION,
    ErrorCode.INVALID_FIELD: WSClose.PROTOCOL_ERROR,
    ErrorCode.HANDSHAKE_FAILED: WSClose.PROTOCOL_ERROR,
    ErrorCode.NO_PREKEYS: WSClose.POLICY_VIOLATION,
    ErrorCode.STORE_UNAVAILABLE: WSClose.TRY_AGAIN_LATER,
    ErrorCode.AUTH_TIMEOUT: WSClose.POLICY_VIOLATION,
    ErrorCode.TOO_MANY_CONNECTIONS: WSClose.TRY_AGAIN_LATER,
    ErrorCode.PUSH_REFUSED: WSClose.POLICY_VIOLATION,  # sent as REQUEST_FAILED only
    ErrorCode.TOO_MANY_DEVICES: WSClose.POLICY_VIOLATION,
    ErrorCode.LAST_DEVICE: WSClose.POLICY_VIOLATION,  # sent as REQUEST_FAILED only
    ErrorCode.RECIPIENTS_REFUSED: WSClose.POLICY_VIOLATION,  # sent in MULTI_SENT only
    ErrorCode.NOT_OWN_DEVICE: WSClose.POLICY_VIOLATION,  # sent as REQUEST_FAILED only
    ErrorCode.ACCESS_DENIED: WSClose.POLICY_VIOLATION,  # sent in SEALED_SENT only
}

#: Status codes a peer may send us that we may send back (RFC 6455 §7.4: 1004–1006 and 1015
#: are reserved and never sent; 3000–4999 are for libraries and applications).
_ECHOABLE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def close_code(code: int, *, by_peer: bool = False) -> WSClose:
    """The WebSocket status code of a close whose cause is ``code`` (a channel's close code).

    Args:
        code: the :class:`ErrorCode` the channel closed with, or 0 for a close without error.
        by_peer: the peer sent ERROR first: this side only completes the close (1000), whatever
            the peer's code was.
    """
    if by_peer or code == 0:
        return WSClose.NORMAL
    try:
        return CLOSE_CODES[ErrorCode(code)]
    except ValueError:
        return WSClose.POLICY_VIOLATION  # a code of a newer version: the peer was refused


def echo_code(received: int) -> int:
    """The code to answer a peer's close frame with: its own (RFC 6455 §5.5.1 "typically
    echos"), unless that is no code (a close without a body), a reserved one or garbage."""
    if received in _ECHOABLE or 3000 <= received <= 4999:
        return received
    return int(WSClose.NORMAL)
