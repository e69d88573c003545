"""Server storage: the :class:`Store` interface and its backends.

* :class:`SQLiteStore`: the embedded, durable default (WAL, group commit).
* :class:`PostgresStore`: for several relay nodes on one PostgreSQL database (asyncpg).
* :class:`MemoryStore`: the same semantics without durability, for tests of upper layers.

All three pass one conformance suite (``tests/store/test_conformance.py``).
"""

from tidings.store.base import (
    MAX_ACCOUNT_NAME,
    NO_SENDER,
    TAG_RETENTION,
    AccessDenied,
    Device,
    DeviceCard,
    DeviceMismatch,
    DeviceRef,
    ExpiryResult,
    InboxItem,
    ItemKind,
    MultiRefused,
    MultiSubmission,
    MultiSubmitResult,
    PreKey,
    PreKeyBundle,
    PreKeyCounts,
    PushSubscription,
    QueueFull,
    SealedMultiRefused,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    SealedSubmission,
    SealedSubmitResult,
    Store,
    Stored,
    StoreStats,
    Submission,
    SubmitResult,
    TagState,
)
from tidings.store.memory import MemoryStore
from tidings.store.postgres import PostgresStore
from tidings.store.sqlite import SQLiteStore

__all__ = [
    "MAX_ACCOUNT_NAME",
    "NO_SENDER",
    "TAG_RETENTION",
    "AccessDenied",
    "Device",
    "DeviceCard",
    "DeviceMismatch",
    "DeviceRef",
    "ExpiryResult",
    "InboxItem",
    "ItemKind",
    "MemoryStore",
    "MultiRefused",
    "MultiSubmission",
    "MultiSubmitResult",
    "PostgresStore",
    "PreKey",
    "PreKeyBundle",
    "PreKeyCounts",
    "PushSubscription",
    "QueueFull",
    "SQLiteStore",
    "SealedMultiRefused",
    "SealedMultiSubmission",
    "SealedMultiSubmitResult",
    "SealedSubmission",
    "SealedSubmitResult",
    "Store",
    "StoreStats",
    "Stored",
    "Submission",
    "SubmitResult",
    "TagState",
]
