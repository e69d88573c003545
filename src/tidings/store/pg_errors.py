"""PostgreSQL's errors as the store's: which mean "cannot write now", which a rule broke, and a
connection attempt that fails with one clear line.

* A lost connection, a server shutting down or refusing connections, a full disk, a read-only
  server (a standby), a statement over :data:`COMMAND_TIMEOUT`: :class:`StoreUnavailable` with
  the state ``/healthz`` reports (``"full"`` or ``"error: …"``). Nothing of the operation was
  kept; the store reconnects for the next batch.
* A constraint (class 23): :class:`IntegrityError`.
* Any other database error: :class:`StoreError`. Our own exceptions and bugs pass through.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tidings.errors import IntegrityError, StoreError, StoreUnavailable, TidingsError

__all__ = [
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "connect",
    "is_lost",
    "is_retryable",
    "redact",
    "translate",
]

#: Seconds a connection attempt may take: a database on the same network answers in
#: milliseconds; ten seconds tell a dead host from a slow one without stalling a start.
CONNECT_TIMEOUT = 10.0

#: Seconds one statement may take before it is abandoned (the batch fails as unavailable): the
#: longest legitimate one is a lock wait behind another node's batch (milliseconds) or a
#: deadlock's detection (PostgreSQL's ``deadlock_timeout``, 1 s by default).
COMMAND_TIMEOUT = 30.0

#: How the relay's connections show in ``pg_stat_activity``, for the operator.
APPLICATION_NAME = "tidings-relay"

#: Errors after which the connection cannot be trusted: it is closed and opened anew.
_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # asyncpg's protocol state out of step with the socket: seen when the server closed the
    # connection (pg_terminate_backend) just as a statement was being sent
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash recovery, cancel
    OSError,
    TimeoutError,
)
#: Errors that say the database cannot write now, not that the operation is wrong.
_UNAVAILABLE = (
    *_LOST,
    asyncpg.exceptions.InsufficientResourcesError,  # 53: disk full, out of memory, too many
    asyncpg.exceptions.PostgresSystemError,  # 58: I/O error
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
)


def is_lost(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` must be replaced."""
    cause = exc.__cause__ if isinstance(exc, TidingsError) else exc
    return isinstance(cause, _LOST)


def is_retryable(exc: BaseException) -> bool:
    """Whether a batch that failed with ``exc`` may run again as it is: a deadlock or a
    serialization failure between nodes (class 40), or a unique key that another node's batch
    committed first (the batch's reads, taken again, see it)."""
    return isinstance(
        exc, asyncpg.exceptions.TransactionRollbackError | asyncpg.UniqueViolationError
    )


def translate(exc: Exception) -> Exception:
    """Our exception for PostgreSQL's (to raise ``from exc``); ours and bugs pass through."""
    if isinstance(exc, TidingsError):
        return exc
    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        error: Exception = StoreUnavailable("full", str(exc))
    elif isinstance(exc, _UNAVAILABLE):
        error = StoreUnavailable(f"error: {_reason(exc)}", f"store unavailable: {_reason(exc)}")
    elif isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        error = IntegrityError(str(exc))
    elif isinstance(exc, asyncpg.PostgresError):
        error = StoreError(str(exc))
    else:
        return exc
    error.__cause__ = exc
    return error


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:
        return "the PostgreSQL URL"


async def connect(url: str, *, timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    """Open a connection to ``url``.

    Raises:
        StoreUnavailable: the server cannot be reached now (refused, unresolvable, timed out,
            starting up or shutting down); the message names the URL without its password.
        StoreError: it answered no (no such database, authentication failed, a bad URL).
    """
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            url,
            timeout=timeout,
            command_timeout=COMMAND_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )
        # ✓ means committed durably (G1): a database set to acknowledge commits before their
        # WAL is flushed (synchronous_commit = off) is asked not to, for this session.
        if await conn.fetchval("SHOW synchronous_commit") == "off":
            await conn.execute("SET synchronous_commit = on")
    except Exception as exc:
        where = f"cannot connect to PostgreSQL at {redact(url)}"
        reason = _connect_reason(exc, timeout)
        error = (
            StoreUnavailable(f"error: {reason}", f"{where}: {reason}")
            if isinstance(exc, _UNAVAILABLE)
            else StoreError(f"{where}: {reason}")
        )
        raise error from exc
    return conn


def _connect_reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is PostgreSQL running and listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ValueError | asyncpg.exceptions.ClientConfigurationError):
        return f"invalid URL: {exc}"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
