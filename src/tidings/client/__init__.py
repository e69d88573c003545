"""The tidings client SDK: a device's durable outbox, inbox, receipts, statuses and trace."""

from .client import Client
from .config import ClientConfig, load_client_config
from .connect import CLIENT_KEEPALIVE, register
from .events import (
    CatchingUp,
    ClientEvent,
    Connected,
    ConnectFailed,
    DecryptionFailed,
    Disconnected,
    EventStream,
    GapDetected,
    GapSkipped,
    IdentityChanged,
    MessageReceived,
    PushDead,
    ReadElsewhere,
    SendRefused,
    StatusChanged,
    StorageFailed,
)

__all__ = [
    "CLIENT_KEEPALIVE",
    "CatchingUp",
    "Client",
    "ClientConfig",
    "ClientEvent",
    "ConnectFailed",
    "Connected",
    "DecryptionFailed",
    "Disconnected",
    "EventStream",
    "GapDetected",
    "GapSkipped",
    "IdentityChanged",
    "MessageReceived",
    "PushDead",
    "ReadElsewhere",
    "SendRefused",
    "StatusChanged",
    "StorageFailed",
    "load_client_config",
    "register",
]
