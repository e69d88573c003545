"""Structured logging for the server: one setup call, two formats, a per-connection adapter.

The logging contract (CONVENTIONS §14). Every tidings logger is a child of ``tidings``.

Levels:

- ``debug``: every frame sent or received, every timer; off in production.
- ``info``: connection opened and closed, device registered or linked, server start/stop.
- ``warning``: the peer misbehaved: malformed frame, protocol violation, keepalive timeout,
  rate limit hit. Their fault, not ours; nothing to fix on the server.
- ``error``: our own failure: a store write failed, an unexpected exception. Someone should look.

Message prefixes, so a connection's story reads at a glance::

    >  frame sent                     > DELIVER seq=42
    <  frame received                 < SEND id=9f2c… targets=3
    =  state change                   = OPEN -> CLOSING (keepalive timeout)
    !  error                          ! store commit failed

Fields: pass structured values with ``extra={...}`` instead of formatting them into the message.
A relay sets up its logging with its node id: every line then carries ``node``. The
established names are ``conn`` (the per-connection id, stamped by :class:`ConnLogger`),
``device``, ``account`` and ``event`` (a stable machine-readable name such as
``"conn.open"``). The JSON format prints one object per line with ``ts`` (UTC, ISO 8601, ms),
``level``, ``logger``, ``msg`` then the extra fields (``exc`` holds a traceback if any). Never log
payloads or key material: ciphertext sizes and ids only.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import ConfigError

__all__ = [
    "LOGGER_NAME",
    "REPEAT_LOG_INTERVAL",
    "ConnLogger",
    "JsonFormatter",
    "NodeStamp",
    "TextFormatter",
    "Throttle",
    "setup_logging",
]

#: The root of every tidings logger.
LOGGER_NAME = "tidings"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

#: Marks the handler installed by :func:`setup_logging`, so a second call replaces it.
_HANDLER_MARK = "_tidings_handler"


def _timestamp(record: logging.LogRecord) -> str:
    """``record.created`` as UTC ISO 8601 with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields passed via ``extra``, ``conn`` first, in the order they were given."""
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
    if "conn" in fields:
        fields = {"conn": fields.pop("conn"), **fields}
    return fields


def _json_default(value: object) -> object:
    """Make ``extra`` values JSON-safe: bytes as hex, anything else as ``str``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as a single line of JSON."""
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extra_fields(record).items():
            entry.setdefault(key, value)  # an extra cannot overwrite the four fixed fields
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=_json_default, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line for people: ``ts LEVEL logger [conn] msg key=value…`` (traceback below, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as human-readable text."""
        fields = _extra_fields(record)
        conn = fields.pop("conn", None)
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name]
        if conn is not None:
            parts.append(f"[{conn}]")
        parts.append(record.getMessage())
        parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def _text_value(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


class NodeStamp(logging.Filter):
    """Stamps ``node=<id>`` on every record that passes the handler (one process, one node)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the field (a record that names a node itself keeps its own)."""
        if not hasattr(record, "node"):
            record.node = self.node
        return True


def setup_logging(
    level: str, fmt: str, stream: IO[str] | None = None, *, node: str | None = None
) -> logging.Logger:
    """Configure the ``tidings`` logger; call once at start-up (calling again reconfigures).

    The logger gets one stream handler with the chosen formatter and stops propagating to the
    root logger, so records are not printed twice when the host application also logs.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error`` (case-insensitive).
        fmt: ``json`` or ``text``.
        stream: where to write; ``sys.stderr`` if ``None``.
        node: the relay node's id, stamped on every line as the field ``node`` (several nodes'
            logs shipped to one place stay apart); ``None``: no such field.

    Returns:
        The configured ``tidings`` logger.

    Raises:
        ConfigError: for an unknown level or format.
    """
    number = _LEVELS.get(level.lower())
    if number is None:
        raise ConfigError(f"log_level: expected one of {', '.join(_LEVELS)}, got {level!r}")
    formatters: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}
    formatter_type = formatters.get(fmt.lower())
    if formatter_type is None:
        raise ConfigError(f"log_format: expected json or text, got {fmt!r}")
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_type())
    if node is not None:
        handler.addFilter(NodeStamp(node))
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.setLevel(number)
    logger.propagate = False
    return logger


class ConnLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that stamps ``conn=<id>`` (and any bound fields) on every record.

    Fields given per call with ``extra=`` are kept and win over bound ones, except ``conn``.

    Example::

        log = ConnLogger(logging.getLogger("tidings.server.session"), conn_id)
        log.debug("< SEND", extra={"targets": 3})
        log = log.bind(device=device_id)   # after HELLO
        log.info("= OPEN", extra={"event": "conn.open"})

    Args:
        logger: the logger to write to.
        conn: the per-connection id.
        **fields: further fields to stamp on every record (e.g. ``device``).
    """

    def __init__(self, logger: logging.Logger, conn: str | int, **fields: object) -> None:
        super().__init__(logger, {**fields, "conn": conn})

    @property
    def conn(self) -> str | int:
        """The connection id stamped on every record."""
        assert self.extra is not None
        conn = self.extra["conn"]
        assert isinstance(conn, str | int)
        return conn

    def bind(self, **fields: object) -> ConnLogger:
        """Return a new adapter stamping the same connection id plus ``fields``."""
        assert self.extra is not None
        merged = {k: v for k, v in self.extra.items() if k != "conn"}
        return ConnLogger(self.logger, self.conn, **{**merged, **fields})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the bound fields into the call's ``extra`` (the stdlib would replace it)."""
        given: Mapping[str, object] = kwargs.get("extra") or {}
        bound: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**bound, **given, "conn": bound["conn"]}
        return msg, kwargs


#: A condition that recurs (out of file descriptors, a full disk, a cap reached) is logged at most
#: once per this many seconds: it shows within seconds, and costs at most six lines a minute.
REPEAT_LOG_INTERVAL = 10.0


class Throttle:
    """At most one log line per ``interval`` seconds for a recurring condition.

    Call :meth:`hit` at each occurrence; log only when it returns a count, which says how many
    occurrences the line stands for (this one and those held back since the previous line).

    Example::

        if n := self._throttle.hit(now):
            log.error("! store unavailable: %s (%d requests failed)", state, n)
    """

    def __init__(self, interval: float = REPEAT_LOG_INTERVAL) -> None:
        self.interval = interval
        self._next = -math.inf
        self._held = 0

    def hit(self, now: float) -> int:
        """Count one occurrence at ``now``; return the count to log now, or 0 (no line)."""
        self._held += 1
        if now < self._next:
            return 0
        count, self._held = self._held, 0
        self._next = now + self.interval
        return count
