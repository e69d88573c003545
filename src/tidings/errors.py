"""The exception tree of tidings: one root, split by who is to blame.

::

    TidingsError
    ├── ProtocolError(code, frame_type, reason)      a protocol rule was broken
    │   ├── LocalProtocolError                      by us: API misuse (a bug in the caller)
    │   └── RemoteProtocolError                     by the peer: bad bytes, bad order, too big
    │       └── FrameError                          an unparseable frame, or one over its limit
    ├── DecryptionError                             authentication failed (one error, whatever check
    │                                               failed, so the wire never tells which)
    ├── HandshakeError                              the Noise handshake cannot complete
    ├── ConnectionClosed                            the connection is gone
    │   ├── ConnectionClosedByUs
    │   └── ConnectionBroken                        by the network or peer (``__cause__``: how)
    │       └── RelayUnreachable(url, reason)       no connection could be opened (refused,
    │                                               DNS, TLS, timed out)
    ├── StoreError                                  storage failed or refused
    │   ├── IntegrityError(rule)                    a store rule would break (``Rule``: account…)
    │   ├── MigrationError                          the schema cannot be brought to this version
    │   └── StoreUnavailable(state)                 the store cannot write now (disk full, I/O
    │                                               error); nothing was kept, retry later
    ├── RefusedError(code, reason)                  the server refused a request (limit, mismatch…)
    ├── ConfigError                                 a configuration value is missing or invalid
    ├── DeviceBusy(home, pid, command)              another process is running this device
    └── StartupError                                the relay cannot start (port taken, data
                                                    directory unwritable, key file damaged)

Lower-layer exceptions are translated at the boundary with ``raise … from exc``.
"""

from __future__ import annotations

import enum


class TidingsError(Exception):
    """Root of every exception raised by tidings."""


class ProtocolError(TidingsError):
    """A protocol rule was broken.

    Attributes:
        code: the wire error code (see ``tidings.wire.ErrorCode``).
        frame_type: the type number of the offending frame, or ``None``.
        reason: a short lower-case explanation.
    """

    def __init__(self, code: int, reason: str, frame_type: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.frame_type = frame_type

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code}, reason={self.reason!r}, "
            f"frame_type={self.frame_type})"
        )


class LocalProtocolError(ProtocolError):
    """We broke the protocol: the calling code misused the API."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


class FrameError(RemoteProtocolError):
    """Bytes that are not a valid frame: undecodable, unknown type, bad field, over a limit."""


class DecryptionError(TidingsError):
    """A ciphertext failed authentication. Deliberately carries no detail."""


class HandshakeError(TidingsError):
    """The Noise handshake cannot complete (bad message, wrong key, wrong state)."""


class ConnectionClosed(TidingsError):
    """The connection is closed; no more frames can be sent or received."""


class ConnectionClosedByUs(ConnectionClosed):
    """We closed the connection."""


class ConnectionBroken(ConnectionClosed):
    """The network or the peer broke the connection; ``__cause__`` says how."""


class RelayUnreachable(ConnectionBroken):
    """No connection to the relay could be opened.

    Attributes:
        url: the relay's URL.
        reason: what failed, for people ("connection refused (is the relay running?)",
            "cannot resolve host …", "TLS: certificate verify failed …", "timed out after 10 s").
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the relay at {url}: {reason}")
        self.url = url
        self.reason = reason


class StoreError(TidingsError):
    """The store failed or refused an operation."""


class Rule(enum.StrEnum):
    """Which rule of the store an operation broke (:attr:`IntegrityError.rule`): what callers
    decide on, never the message's text. The value is the message."""

    ACCOUNT_EXISTS = "account exists"
    KEY_ALREADY_REGISTERED = "device key already registered"
    UNKNOWN_DEVICE = "unknown device"
    LINK_CODE_EXISTS = "link code exists"
    INVALID_LINK_CODE = "invalid or expired link code"
    IDENTITY_KEY_CHANGED = "identity key changed"
    DUPLICATE_TARGET = "duplicate target device"
    TOO_MANY_DEVICES = "the account has its maximum of devices"
    LAST_DEVICE = "the account's last device"
    #: any other constraint of the database (the message names it)
    CONSTRAINT = "constraint"


class IntegrityError(StoreError):
    """The operation would break a rule of the store (e.g. the account exists); ``rule`` says
    which. Nothing the operation did is kept.

    ``IntegrityError(Rule.ACCOUNT_EXISTS)``; a message alone (``IntegrityError("…")``) is a
    :attr:`Rule.CONSTRAINT` of the database that has no name of its own.
    """

    def __init__(self, rule: Rule | str) -> None:
        if isinstance(rule, Rule):
            super().__init__(rule.value)
            self.rule = rule
        else:
            super().__init__(rule)
            self.rule = Rule.CONSTRAINT


class MigrationError(StoreError):
    """The schema cannot be migrated to the version this code needs."""


class StoreUnavailable(StoreError):
    """The store cannot write now: the disk is full, an I/O error, a read-only file system.

    Nothing of the failed operation was kept, so it may be retried as it is once the cause is
    gone. ``__cause__`` is the lower layer's exception.

    Attributes:
        state: what ``/healthz`` reports: ``"full"``, or ``"error: <what SQLite said>"``.
    """

    def __init__(self, state: str, message: str | None = None) -> None:
        super().__init__(message or f"store unavailable: {state}")
        self.state = state


class RefusedError(TidingsError):
    """The server refused a request.

    Attributes:
        code: the wire error code.
        reason: a short lower-case explanation.
    """

    def __init__(self, code: int, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        #: Seconds to wait before asking again (RATE_LIMITED), else 0.
        self.retry_after = retry_after


class ConfigError(TidingsError):
    """A configuration value is missing or invalid."""


class DeviceBusy(TidingsError):
    """Another process holds this device's home (its lock): one process per device.

    Attributes:
        home: the device's home directory.
        pid: the holder's process id, or ``None`` if it did not say yet.
        command: what the holder runs (``"tidings listen"``), or ``""``.
    """

    def __init__(self, home: object, pid: int | None, command: str) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        what = f" ({command})" if command else ""
        super().__init__(f"device {home} is in use by {who}{what}; stop it first")
        self.home = home
        self.pid = pid
        self.command = command


class StartupError(TidingsError):
    """The relay cannot start; the message is one line naming the address or path and what to do
    (the ``tidings server`` command prints it and exits 1, without a traceback)."""
