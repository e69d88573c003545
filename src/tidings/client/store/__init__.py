"""The client's local store: one SQLite file per device (DESIGN §6).

* :mod:`.records` — the records, enums, error and limits of the API.
* :mod:`.store` — :class:`ClientStore` and its invariants (every write is one durable
  transaction), assembled from the private feature modules ``_outbox``, ``_incoming`` and
  ``_timers`` on top of ``_sql`` (connection, transactions, migrations, row mapping).

The schema is :mod:`tidings.client.migrations`.
"""

from ._crypto import CryptoWrites, E2EIdentity, PreKeyRow
from ._marks import DeviceMark
from ._sealed import SealedRecord
from .records import (
    MAX_OUTBOX,
    SCHEMA_VERSION,
    ConversationSummary,
    ConversationTimer,
    DeviceStatus,
    Direction,
    ExpiredMessage,
    Identity,
    MessageKey,
    OutboxFullError,
    OutboxItem,
    OutboxRequest,
    SentMark,
    StoredMessage,
    TraceEntry,
    TracePoint,
)
from .store import ClientStore

__all__ = [
    "MAX_OUTBOX",
    "SCHEMA_VERSION",
    "ClientStore",
    "ConversationSummary",
    "ConversationTimer",
    "CryptoWrites",
    "DeviceMark",
    "DeviceStatus",
    "Direction",
    "E2EIdentity",
    "ExpiredMessage",
    "Identity",
    "MessageKey",
    "OutboxFullError",
    "OutboxItem",
    "OutboxRequest",
    "PreKeyRow",
    "SealedRecord",
    "SentMark",
    "StoredMessage",
    "TraceEntry",
    "TracePoint",
]
