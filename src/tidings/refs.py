"""Values the relay and the device share: what names one device of one account.

Below every package (DESIGN §2: "values shared by the relay and the device live low enough for
both"), so the device SDK names devices without importing the relay's store.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeviceRef"]


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    """One device of one account: the unit messages are addressed and queued to."""

    account: str
    device_id: int

    def __str__(self) -> str:
        return f"{self.account}.{self.device_id}"
