"""The frame that removes a device from its account (docs/protocol.md §6.26).

UNLINK names a device of the sender's own account; the relay removes it for good (its key can
no longer connect, its queue and prekeys are deleted, its id is never reused) and answers with
the account's devices after it (DEVICES), or REQUEST_FAILED: UNKNOWN_DEVICE (no such device of
this account), LAST_DEVICE (the account's only device). Invariant: like every frame, an invalid
one cannot be constructed (``FrameError`` ``INVALID_FIELD``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import Frame, FrameType, _check_uint, _invalid

__all__ = ["Unlink"]


@dataclass(frozen=True, slots=True)
class Unlink(Frame):
    """Remove device ``device_id`` of this device's own account (itself too: leaving)."""

    TYPE: ClassVar[FrameType] = FrameType.UNLINK
    request_id: int
    device_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_uint(self.TYPE, "device_id", self.device_id)
        if self.device_id < 1:
            raise _invalid(self.TYPE, "device_id must be at least 1")

    def fields(self) -> list[Any]:
        return [self.request_id, self.device_id]
