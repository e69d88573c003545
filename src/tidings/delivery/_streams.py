"""The values of per-sender ordering (:mod:`.ordering`): stream keys and states, and events.

Frozen dataclasses that validate on construction; :class:`StreamState` is what the client
persists per stream.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ..errors import LocalProtocolError
from ..wire import ErrorCode

__all__ = [
    "Duplicate",
    "GapDetected",
    "GapSkipped",
    "OrderEvent",
    "SenderDevice",
    "SkipReason",
    "StreamKey",
    "StreamState",
    "Surfaced",
]

T = TypeVar("T")

#: A sender device: ``(account, device_id)``.
SenderDevice: TypeAlias = tuple[str, int]


def _invalid(reason: str) -> LocalProtocolError:
    return LocalProtocolError(ErrorCode.INVALID_FIELD, reason)


@dataclass(frozen=True, slots=True, order=True)
class StreamKey:
    """One sender device in one conversation."""

    conversation: str
    sender_account: str
    sender_device: int


@dataclass(frozen=True, slots=True)
class StreamState:
    """The durable state of one stream (held messages excluded: they live in the store).

    Attributes:
        key: the stream.
        expected: the next counter to surface in order.
        missing: skipped counters never surfaced, as ascending inclusive ``(first, last)``
            ranges, all below ``expected``.
        horizon: counters below it that are not in ``missing`` may have been forgotten (see
            :data:`MAX_MISSING_RANGES`); at and above it, they were surfaced.
    """

    key: StreamKey
    expected: int = 1
    missing: tuple[tuple[int, int], ...] = ()
    horizon: int = 1

    def __post_init__(self) -> None:
        if type(self.expected) is not int or self.expected < 1:
            raise _invalid("expected must be an integer >= 1")
        if type(self.horizon) is not int or not 1 <= self.horizon <= self.expected:
            raise _invalid("horizon must be an integer in 1..expected")
        low = 0
        for first, last in self.missing:
            if not low < first <= last < self.expected:
                raise _invalid("missing ranges must ascend, apart, below expected")
            low = last + 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible form (see :meth:`from_dict`)."""
        k = self.key
        return {
            "conversation": k.conversation,
            "sender_account": k.sender_account,
            "sender_device": k.sender_device,
            "expected": self.expected,
            "missing": [list(r) for r in self.missing],
            "horizon": self.horizon,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamState:
        """Rebuild from :meth:`to_dict`.

        Raises:
            LocalProtocolError: the data is not a valid state.
        """
        try:
            key = StreamKey(data["conversation"], data["sender_account"], data["sender_device"])
            missing = tuple((int(a), int(b)) for a, b in data["missing"])
            return cls(key, data["expected"], missing, data["horizon"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid("not a stream state") from exc


@dataclass(frozen=True, slots=True)
class Surfaced(Generic[T]):
    """Show ``item`` now. ``late``: it arrived after its gap was skipped, out of order."""

    key: StreamKey
    counter: int
    item: T
    late: bool = False


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Counters ``missing`` of ``key`` have not arrived; later ones are held meanwhile."""

    key: StreamKey
    missing: range


class SkipReason(enum.StrEnum):
    """Why the reorderer stopped waiting for a gap."""

    TIMEOUT = "timeout"  #: it stayed open for ``hold_seconds``
    OVERFLOW = "overflow"  #: too many messages were held behind it
    EXPIRED = "expired"  #: the relay said these messages expired before this device fetched them


@dataclass(frozen=True, slots=True)
class GapSkipped:
    """The reorderer stopped waiting for counters ``missing`` (for ``reason``); what was held
    behind them follows. If they arrive later, they are surfaced as late."""

    key: StreamKey
    missing: range
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Duplicate(Generic[T]):
    """A counter already surfaced or already held; ``item`` was dropped."""

    key: StreamKey
    counter: int
    item: T


OrderEvent: TypeAlias = Surfaced[T] | GapDetected | GapSkipped | Duplicate[T]
