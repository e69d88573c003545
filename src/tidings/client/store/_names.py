"""The names of this account's devices (DEVICE_INFO content): what `tidings devices` shows.

The relay keeps no device names (G6); each device tells the account's other devices its name,
end-to-end encrypted, once per device set it has not told yet (a new device hears it at its
first connection). The last name a device sent wins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._crypto import CryptoWrites
from ._history import HistoryArchive
from .records import OutboxRequest

__all__ = ["DeviceNames"]


class DeviceNames(HistoryArchive):
    """The device-name methods of :class:`~tidings.client.store.ClientStore`."""

    def device_names(self) -> dict[int, str]:
        """The names the account's other devices gave themselves, by device id."""
        return {int(d): str(n) for d, n in self._read("SELECT device_id, name FROM device_names")}

    def names_told(self) -> tuple[int, ...]:
        """The own devices this one last told its name to."""
        rows = self._read("SELECT devices FROM name_told")
        return tuple(json.loads(rows[0][0])) if rows else ()

    def queue_device_info(self, request: OutboxRequest, devices: Sequence[int]) -> None:
        """Queue this device's DEVICE_INFO for its account (exempt from MAX_OUTBOX) and record
        that ``devices`` are told. ONE transaction."""
        with self._tx() as db:
            self._insert_outbox(db, request)
            db.execute(
                "INSERT OR REPLACE INTO name_told (id, devices) VALUES (1, ?)",
                (json.dumps(sorted(devices)),),
            )

    def commit_device_name(
        self, seq: int, device_id: int, name: str, at: float, crypto: CryptoWrites | None = None
    ) -> bool:
        """Store another device's name (a DEVICE_INFO item). ONE transaction with the cursor
        (``seq``); False for a duplicate ``seq``."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            db.execute(
                "INSERT OR REPLACE INTO device_names (device_id, name, at) VALUES (?, ?, ?)",
                (device_id, name, at),
            )
            return True
