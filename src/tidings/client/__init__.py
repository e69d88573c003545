"""The tidings client SDK: a device's durable outbox, inbox, receipts, statuses and trace."""

from .client import Client
from .connect import CLIENT_KEEPALIVE, register
from .events import (
    ClientEvent,
    Connected,
    Disconnected,
    GapDetected,
    GapSkipped,
    MessageReceived,
    StatusChanged,
)

__all__ = [
    "CLIENT_KEEPALIVE",
    "Client",
    "ClientEvent",
    "Connected",
    "Disconnected",
    "GapDetected",
    "GapSkipped",
    "MessageReceived",
    "StatusChanged",
    "register",
]
