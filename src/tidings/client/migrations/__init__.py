"""Schema migrations of the client store (``tidings.client.store``).

``MIGRATIONS[n - 1]`` brings a database at ``PRAGMA user_version`` ``n - 1`` to ``n``; the store
runs each in its own transaction together with the version bump. Never edit a released
migration: append a new one. They are Python strings, not ``.sql`` files, so they ship in every
kind of install without package-data rules.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = """
-- This device: one row. The Noise private key never leaves this file.
CREATE TABLE identity (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    noise_private_key BLOB    NOT NULL CHECK (length(noise_private_key) = 32),
    account           TEXT    NOT NULL,
    device_id         INTEGER NOT NULL,
    device_name       TEXT    NOT NULL,
    server_url        TEXT    NOT NULL,
    server_key        BLOB    CHECK (server_key IS NULL OR length(server_key) = 32),
    read_receipts     INTEGER NOT NULL DEFAULT 1
);

-- The highest inbox seq durably stored: sent in HELLO, acked to the server.
CREATE TABLE cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO cursor (id, seq) VALUES (1, 0);

-- This device's last used counter per conversation (G4).
CREATE TABLE send_counters (
    conversation TEXT    PRIMARY KEY,
    last         INTEGER NOT NULL
) WITHOUT ROWID;

-- Content waiting for its ✓ (G2). position = creation order, never reused.
CREATE TABLE outbox (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      BLOB    NOT NULL UNIQUE,
    recipient       TEXT    NOT NULL,
    kind            INTEGER NOT NULL,
    content         BLOB    NOT NULL,
    created_at      REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0
);

-- Sent and received messages. shown = display order, NULL while held for ordering.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    message_id     BLOB    NOT NULL,
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    conversation   TEXT    NOT NULL,
    counter        INTEGER NOT NULL,
    body           BLOB    NOT NULL,
    sent_at        REAL    NOT NULL,
    direction      INTEGER NOT NULL,
    recipient      TEXT,
    received_at    REAL,
    stored_at      REAL,
    failed_code    INTEGER,
    failed_reason  TEXT,
    read_at        REAL,
    shown          INTEGER UNIQUE,
    UNIQUE (sender_account, sender_device, message_id)
);
CREATE INDEX messages_by_id ON messages (message_id);
CREATE INDEX messages_by_conversation ON messages (conversation, shown);
CREATE INDEX messages_held ON messages (id) WHERE shown IS NULL;

-- Status of each sent message at each recipient device.
CREATE TABLE statuses (
    message_id BLOB    NOT NULL,
    account    TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    status     INTEGER NOT NULL,
    at         REAL    NOT NULL,
    PRIMARY KEY (message_id, account, device_id)
) WITHOUT ROWID;

-- Confirmation points of each message (DESIGN §5, trace).
CREATE TABLE trace (
    id         INTEGER PRIMARY KEY,
    message_id BLOB    NOT NULL,
    point      TEXT    NOT NULL,
    at         REAL    NOT NULL,
    detail     TEXT
);
CREATE INDEX trace_by_message ON trace (message_id, at);

-- Ordering state per sender device and conversation (delivery.ordering.StreamState).
CREATE TABLE streams (
    conversation   TEXT    NOT NULL,
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    expected       INTEGER NOT NULL,
    missing        TEXT    NOT NULL,
    horizon        INTEGER NOT NULL,
    PRIMARY KEY (conversation, sender_account, sender_device)
) WITHOUT ROWID;
"""

#: Every migration, in order; ``len(MIGRATIONS)`` is the schema version this code needs.
MIGRATIONS: tuple[str, ...] = (_V1,)
