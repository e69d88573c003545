"""The end-to-end side of the client store: identity key, prekeys, sessions, pinned identities.

Writes that a decryption or an encryption causes (session records, used prekeys, pinned
identity keys, seen base keys) are a :class:`CryptoWrites` value that the caller hands to the
write method storing what they produced — the decrypted message (``commit_incoming(...,
crypto=writes)``), the cursor past an item, the ciphertexts (``save_sealed``) — and they are
applied in that method's transaction, so the ratchet state and what it produced are committed
together or not at all (issue 3: "state persisted in the same local transaction as the
decrypted message and the ack"). Nothing is parked for a later transaction: a write set that
no transaction carried is simply lost, and the caller's session cache must forget it
(``DeviceCrypto.reload``; the store's :meth:`~._sql.Database.on_rollback` hooks do it for every
transaction that carried crypto writes and failed). Session records go through the
transaction's write set (:mod:`._writeset`): inside a batch, a record rewritten by every
message is written once, before the batch's COMMIT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.errors import StoreError
from tidings.refs import DeviceRef

from ._sql import Database

__all__ = ["Crypto", "CryptoWrites", "E2EIdentity", "PreKeyKind", "PreKeyRow"]

#: Prekey kinds of the ``e2e_prekeys`` table (stable: stored).
SIGNED, ONE_TIME, KEM = 1, 2, 3


class PreKeyKind:
    """The ``kind`` values of stored prekeys."""

    SIGNED = SIGNED
    ONE_TIME = ONE_TIME
    KEM = KEM


@dataclass(frozen=True, slots=True)
class E2EIdentity:
    """This device's end-to-end identity: the Ed25519 seed, libsignal registration id, and
    the next free prekey id (one counter for every kind)."""

    identity_seed: bytes
    registration_id: int
    next_key_id: int


@dataclass(frozen=True, slots=True)
class PreKeyRow:
    """One of this device's prekeys as stored."""

    kind: int
    key_id: int
    private: bytes
    public: bytes
    signature: bytes | None
    created_at: float
    last_resort: bool = False
    uploaded: bool = False
    replaced_at: float | None = None


@dataclass(slots=True)
class CryptoWrites:
    """What one decryption or encryption batch changed, to commit with its result.

    Attributes:
        sessions: new session records per peer device.
        pins: identity keys to pin per peer device: ``(key, changed)``; ``changed`` marks a
            key that replaced a different pinned one.
        used_prekeys: ``(kind, key_id)`` of prekeys consumed (deleted; a last-resort KEM
            prekey never is).
        base_keys: base keys of sessions started without a one-time prekey (replay guard).
        unverify: accounts whose verified safety number no longer holds.
        forget_sealed: devices whose saved ciphertexts are void (their session was rebuilt).
        sender_keys: sender-key records (serialized) a group message or key moved, by
            (group id, sender device).
        at: when (local clock).
    """

    at: float
    sessions: dict[DeviceRef, bytes] = field(default_factory=dict)
    pins: dict[DeviceRef, tuple[bytes, bool]] = field(default_factory=dict)
    used_prekeys: list[tuple[int, int]] = field(default_factory=list)
    base_keys: list[bytes] = field(default_factory=list)
    unverify: set[str] = field(default_factory=set)
    forget_sealed: set[DeviceRef] = field(default_factory=set)
    sender_keys: dict[tuple[bytes, DeviceRef], bytes] = field(default_factory=dict)


class Crypto(Database):
    """The end-to-end methods of :class:`~tidings.client.store.ClientStore`."""

    # ------------------------------------------------------------ crypto writes

    def save_crypto(self, writes: CryptoWrites) -> None:
        """Commit crypto writes that store nothing else (a session built from a prekey
        bundle). One transaction."""
        with self._tx(writes):
            pass

    def _apply_crypto(self, db: sqlite3.Connection, w: CryptoWrites) -> None:
        """Apply ``w`` in the running transaction: the session records into its write set
        (written once before COMMIT), the rest at once (rare: a session's first message)."""
        if w.sessions:
            self._pending().sessions.update(w.sessions)
        for dev, (key, changed) in w.pins.items():
            db.execute(
                "INSERT INTO e2e_identities VALUES (?, ?, ?, ?, NULL)"
                " ON CONFLICT (account, device_id) DO UPDATE SET"
                " identity_key = excluded.identity_key,"
                " changed_at = CASE WHEN ? THEN excluded.first_seen ELSE changed_at END",
                (dev.account, dev.device_id, key, w.at, int(changed)),
            )
        for kind, key_id in w.used_prekeys:
            db.execute(
                "DELETE FROM e2e_prekeys WHERE kind = ? AND key_id = ? AND last_resort = 0",
                (kind, key_id),
            )
        for base_key in w.base_keys:
            db.execute("INSERT OR IGNORE INTO e2e_base_keys VALUES (?, ?)", (base_key, w.at))
        for account in w.unverify:
            db.execute("DELETE FROM e2e_verified WHERE account = ?", (account,))
        for dev in w.forget_sealed:
            db.execute(
                "DELETE FROM e2e_sealed WHERE account = ? AND device_id = ?",
                (dev.account, dev.device_id),
            )
        db.executemany(
            "INSERT OR REPLACE INTO group_sender_keys VALUES (?, ?, ?, ?)",
            [(g, d.account, d.device_id, r) for (g, d), r in w.sender_keys.items()],
        )

    # ------------------------------------------------------------ identity and prekeys

    def e2e_identity(self) -> E2EIdentity | None:
        """This device's end-to-end identity, or ``None`` before it was created."""
        rows = self._read("SELECT identity_seed, registration_id, next_key_id FROM e2e_identity")
        return E2EIdentity(*rows[0]) if rows else None

    def init_e2e(self, identity: E2EIdentity, prekeys: Sequence[PreKeyRow]) -> bool:
        """Save the end-to-end identity and its first prekeys. One transaction.

        Returns:
            False (nothing changes) if an identity is already saved.
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM e2e_identity").fetchone():
                return False
            db.execute(
                "INSERT INTO e2e_identity VALUES (1, ?, ?, ?)",
                (identity.identity_seed, identity.registration_id, identity.next_key_id),
            )
            self._insert_prekeys(db, prekeys)
            return True

    def add_prekeys(
        self, prekeys: Sequence[PreKeyRow], next_key_id: int, *, replace_at: float | None = None
    ) -> None:
        """Add new prekeys and move the id counter. One transaction. With ``replace_at``, the
        current signed and last-resort KEM prekeys are marked replaced at that time (when the
        new batch holds their successors), and no longer to be uploaded."""
        with self._tx() as db:
            if replace_at is not None:
                db.execute(
                    "UPDATE e2e_prekeys SET replaced_at = ?, uploaded = 1 WHERE replaced_at IS NULL"
                    " AND (kind = ? OR (kind = ? AND last_resort = 1))",
                    (replace_at, SIGNED, KEM),
                )
            self._insert_prekeys(db, prekeys)
            if not db.execute("UPDATE e2e_identity SET next_key_id = ?", (next_key_id,)).rowcount:
                raise StoreError("no end-to-end identity saved yet")

    def _insert_prekeys(self, db: sqlite3.Connection, prekeys: Iterable[PreKeyRow]) -> None:
        for p in prekeys:
            db.execute(
                "INSERT INTO e2e_prekeys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(p.kind, p.key_id, p.private, p.public, p.signature, p.created_at),
                    *(int(p.last_resort), int(p.uploaded), p.replaced_at),
                ),
            )

    def prekeys(self, *, uploaded: bool | None = None) -> list[PreKeyRow]:
        """This device's prekeys (``uploaded`` filters), by kind and id."""
        sql = "SELECT * FROM e2e_prekeys"
        params: tuple[object, ...] = ()
        if uploaded is not None:
            sql += " WHERE uploaded = ?"
            params = (int(uploaded),)
        rows = self._read(sql + " ORDER BY kind, key_id", *params)
        return [_prekey_row(r) for r in rows]

    def prekey(self, kind: int, key_id: int) -> PreKeyRow | None:
        """One prekey by kind and id (``None``: unknown, or used already)."""
        rows = self._read("SELECT * FROM e2e_prekeys WHERE kind = ? AND key_id = ?", kind, key_id)
        return _prekey_row(rows[0]) if rows else None

    def current_prekey(self, kind: int) -> PreKeyRow | None:
        """The signed (``SIGNED``) or last-resort KEM (``KEM``) prekey not yet replaced."""
        extra = " AND last_resort = 1" if kind == KEM else ""
        rows = self._read(
            "SELECT * FROM e2e_prekeys WHERE kind = ? AND replaced_at IS NULL"
            f"{extra} ORDER BY key_id DESC LIMIT 1",
            kind,
        )
        return _prekey_row(rows[0]) if rows else None

    def mark_uploaded(self, keys: Iterable[tuple[int, int]]) -> None:
        """The relay stored these ``(kind, key_id)``. One transaction."""
        with self._tx() as db:
            db.executemany(
                "UPDATE e2e_prekeys SET uploaded = 1 WHERE kind = ? AND key_id = ?", list(keys)
            )

    def prune_replaced(self, before: float) -> int:
        """Delete signed and last-resort prekeys replaced before ``before``, and the replay
        guard's base keys recorded before it (their signed prekeys are gone too). One
        transaction. Returns how many prekeys went."""
        with self._tx() as db:
            n = db.execute(
                "DELETE FROM e2e_prekeys WHERE replaced_at IS NOT NULL AND replaced_at < ?",
                (before,),
            ).rowcount
            db.execute("DELETE FROM e2e_base_keys WHERE at < ?", (before,))
            return int(n)

    # ------------------------------------------------------------ sessions and identities

    def session_record(self, device: DeviceRef) -> bytes | None:
        """The session record with ``device``: as the open transaction wrote it, else as
        stored."""
        for ws in self._written():
            record = ws.sessions.get(device)
            if record is not None:
                return record
        rows = self._read(
            "SELECT record FROM e2e_sessions WHERE account = ? AND device_id = ?",
            device.account,
            device.device_id,
        )
        return bytes(rows[0][0]) if rows else None

    def pinned_identities(self, account: str) -> dict[int, tuple[bytes, float | None]]:
        """The pinned identity key of each known device of ``account``, with the time it last
        changed (``None``: never)."""
        rows = self._read(
            "SELECT device_id, identity_key, changed_at FROM e2e_identities WHERE account = ?",
            account,
        )
        return {d: (bytes(k), c) for d, k, c in rows}

    def base_key_seen(self, base_key: bytes) -> bool:
        """Whether a session was already started with this base key (replay guard)."""
        return bool(self._read("SELECT 1 FROM e2e_base_keys WHERE base_key = ?", base_key))

    def verified_number(self, account: str) -> str | None:
        """The safety number the user confirmed for ``account``, or ``None``."""
        rows = self._read("SELECT safety_number FROM e2e_verified WHERE account = ?", account)
        return str(rows[0][0]) if rows else None

    def set_verified(self, account: str, number: str | None, at: float) -> None:
        """Record (``None``: forget) the safety number the user confirmed. One transaction."""
        with self._tx() as db:
            if number is None:
                db.execute("DELETE FROM e2e_verified WHERE account = ?", (account,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO e2e_verified VALUES (?, ?, ?)", (account, number, at)
                )

    # ------------------------------------------------------------ ciphertexts

    def sealed(self, message_id: bytes) -> dict[DeviceRef, bytes]:
        """The ciphertexts saved for an outbox entry, per target device."""
        rows = self._read(
            "SELECT account, device_id, payload FROM e2e_sealed WHERE message_id = ?", message_id
        )
        return {DeviceRef(a, d): bytes(p) for a, d, p in rows}

    def save_sealed(
        self, payloads: Sequence[tuple[bytes, DeviceRef, bytes]], crypto: CryptoWrites
    ) -> None:
        """Save ciphertexts ``(message_id, device, payload)`` together with the ``crypto``
        writes (session records) that produced them. One transaction: commit before
        sending."""
        with self._tx(crypto) as db:
            db.executemany(
                "INSERT OR REPLACE INTO e2e_sealed VALUES (?, ?, ?, ?)",
                [(m, d.account, d.device_id, p) for m, d, p in payloads],
            )


def _prekey_row(row: Sequence[Any]) -> PreKeyRow:
    kind, key_id, private, public, signature, created_at, last_resort, uploaded, replaced = row
    return PreKeyRow(
        kind,
        key_id,
        bytes(private),
        bytes(public),
        None if signature is None else bytes(signature),
        created_at,
        bool(last_resort),
        bool(uploaded),
        replaced,
    )
