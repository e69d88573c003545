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
    DevicesChanged,
    Disconnected,
    EventStream,
    GapDetected,
    GapSkipped,
    IdentityChanged,
    MessageReceived,
    MessagesExpired,
    PushDead,
    ReadElsewhere,
    SendRefused,
    StatusChanged,
    StorageFailed,
    TimerChanged,
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
    "DevicesChanged",
    "Disconnected",
    "EventStream",
    "GapDetected",
    "GapSkipped",
    "IdentityChanged",
    "MessageReceived",
    "MessagesExpired",
    "PushDead",
    "ReadElsewhere",
    "SendRefused",
    "StatusChanged",
    "StorageFailed",
    "TimerChanged",
    "load_client_config",
    "register",
]
