"""Device certificates at the client (docs/protocol.md §6.31): the link secrets this device
issued, its own link proof, and what it concluded of each device's certificate.

A mark is per ``(account, device_id)`` and names the identity key it was concluded for: a mark
for another key than the one pinned now says nothing (the CLI shows it as not checked).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ._names import DeviceNames

__all__ = ["DeviceMark", "DeviceMarks"]


@dataclass(frozen=True, slots=True)
class DeviceMark:
    """What this device concluded of one device's certificate.

    ``status``: ``certified`` (by ``issuer``), ``uncertified`` (none: linked before
    certificates, by an old client, or an account's first device), ``unchecked`` (a key it
    needs is not known here yet), ``invalid`` (refused: ``reason``).
    """

    account: str
    device_id: int
    status: str
    issuer: int | None
    reason: str
    identity_key: bytes | None
    at: float


class DeviceMarks(DeviceNames):
    """The certificate methods of :class:`~tidings.client.store.ClientStore`."""

    def put_link_secret(self, code_id: bytes, secret: bytes, expires_at: float) -> None:
        """Keep the secret half of a link code this device issued, until ``expires_at``."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO link_secrets (code_id, secret, expires_at)"
                " VALUES (?, ?, ?)",
                (code_id, secret, expires_at),
            )

    def link_secret(self, code_id: bytes, now: float) -> bytes | None:
        """The secret of this device's unexpired link code ``code_id``, if any."""
        rows = self._read(
            "SELECT secret FROM link_secrets WHERE code_id = ? AND expires_at > ?", code_id, now
        )
        return bytes(rows[0][0]) if rows else None

    def set_link_proof(self, proof: bytes) -> None:
        """Keep this device's own link proof (it goes with its DEVICE_INFO)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO link_proof (id, proof) VALUES (1, ?)", (proof,))

    def link_proof(self) -> bytes | None:
        """This device's own link proof, if it was linked with a code that had a secret."""
        rows = self._read("SELECT proof FROM link_proof")
        return bytes(rows[0][0]) if rows else None

    def device_marks(self, account: str) -> dict[int, DeviceMark]:
        """The marks of ``account``'s devices, by device id."""
        rows = self._read(
            "SELECT device_id, status, issuer, reason, identity_key, at FROM device_marks"
            " WHERE account = ?",
            account,
        )
        return {
            int(d): DeviceMark(account, int(d), s, i, r, None if k is None else bytes(k), at)
            for d, s, i, r, k, at in rows
        }

    def set_device_mark(self, mark: DeviceMark) -> None:
        """Record ``mark`` (replacing the device's earlier one)."""
        with self._tx() as db:
            _write_mark(db, mark, None)

    def certify(self, mark: DeviceMark, certificate: bytes, code_id: bytes) -> None:
        """Record a certificate this device signed (waiting to be published at the relay) and
        drop the link secret it used (one code, one device). ONE transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM link_secrets WHERE code_id = ?", (code_id,))
            _write_mark(db, mark, certificate)

    def unpublished_certificates(self) -> list[tuple[int, bytes]]:
        """The certificates this device signed that the relay does not have yet."""
        rows = self._read(
            "SELECT device_id, certificate FROM device_marks WHERE published = 0"
            " AND certificate IS NOT NULL ORDER BY device_id"
        )
        return [(int(d), bytes(c)) for d, c in rows]

    def certificate_published(self, device_id: int, certificate: bytes) -> None:
        """The relay stored ``certificate`` for ``device_id`` (an own device)."""
        with self._tx() as db:
            db.execute(
                "UPDATE device_marks SET published = 1 WHERE device_id = ? AND certificate = ?",
                (device_id, certificate),
            )


def _write_mark(db: sqlite3.Connection, mark: DeviceMark, certificate: bytes | None) -> None:
    db.execute(
        "INSERT OR REPLACE INTO device_marks (account, device_id, status, issuer, reason,"
        " identity_key, at, certificate, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mark.account,
            mark.device_id,
            mark.status,
            mark.issuer,
            mark.reason,
            mark.identity_key,
            mark.at,
            certificate,
            int(certificate is None),
        ),
    )
