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

_V2 = """
-- End-to-end encryption (issue 3). This device's identity key and counters: one row.
CREATE TABLE e2e_identity (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    identity_seed   BLOB    NOT NULL CHECK (length(identity_seed) = 32),
    registration_id INTEGER NOT NULL,
    next_key_id     INTEGER NOT NULL
);

-- This device's prekeys. kind: 1 signed, 2 one-time, 3 KEM (one-time or last resort).
-- uploaded: the relay confirmed it (PREKEYS_STORED). replaced_at: a signed or last-resort
-- key that a newer one replaced; kept a while for messages that still name it.
CREATE TABLE e2e_prekeys (
    kind        INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    private     BLOB    NOT NULL,
    public      BLOB    NOT NULL,
    signature   BLOB,
    created_at  REAL    NOT NULL,
    last_resort INTEGER NOT NULL DEFAULT 0,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    replaced_at REAL,
    PRIMARY KEY (kind, key_id)
) WITHOUT ROWID;

-- The session record with each peer device (tidings.e2e.Session.serialize).
CREATE TABLE e2e_sessions (
    account   TEXT    NOT NULL,
    device_id INTEGER NOT NULL,
    record    BLOB    NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;

-- The identity key of each peer device, pinned on first use; changed_at when it changed.
CREATE TABLE e2e_identities (
    account      TEXT    NOT NULL,
    device_id    INTEGER NOT NULL,
    identity_key BLOB    NOT NULL CHECK (length(identity_key) = 32),
    first_seen   REAL    NOT NULL,
    changed_at   REAL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;

-- Accounts whose safety number the user compared: the number they confirmed.
CREATE TABLE e2e_verified (
    account       TEXT PRIMARY KEY,
    safety_number TEXT NOT NULL,
    at            REAL NOT NULL
) WITHOUT ROWID;

-- Ciphertexts of outbox entries, per target device: a retry sends the same bytes.
CREATE TABLE e2e_sealed (
    message_id BLOB    NOT NULL,
    account    TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    payload    BLOB    NOT NULL,
    PRIMARY KEY (message_id, account, device_id)
) WITHOUT ROWID;

-- Base keys of sessions started without a one-time prekey (only the signed and last-resort
-- keys, which are reused): a second message with the same base key is a replay.
CREATE TABLE e2e_base_keys (
    base_key BLOB PRIMARY KEY,
    at       REAL NOT NULL
) WITHOUT ROWID;
"""

_V3 = """
-- Expiry notices (DELIVER kind 2: a message of this sender device expired before this device
-- fetched it) not yet matched to a missing counter (delivery.ordering.Reorderer.expired).
CREATE TABLE expired_notices (
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    count          INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (sender_account, sender_device)
) WITHOUT ROWID;
"""

_V4 = """
-- "Seen" (issue 9: nothing received is ever hidden): a received message is unseen until a UI
-- displayed it (``listen`` printed it, the API's mark_seen). Messages stored before this
-- version count as seen: they were shown by the code of their time, or are in the history.
ALTER TABLE messages ADD COLUMN seen_at REAL;
UPDATE messages SET seen_at = COALESCE(received_at, sent_at) WHERE direction = 0;
CREATE INDEX messages_unseen ON messages (shown)
    WHERE direction = 0 AND seen_at IS NULL AND shown IS NOT NULL;
"""

_V5 = """
-- Full-text search (issue 13): every shown message's body in an FTS5 index, kept in step by
-- triggers (a held message enters it when it is shown; a deleted one leaves it), so nothing
-- outside this file decides what is searchable. rowid = messages.id.
CREATE VIRTUAL TABLE messages_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
INSERT INTO messages_fts (rowid, body)
    SELECT id, CAST(body AS TEXT) FROM messages WHERE shown IS NOT NULL;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN NEW.shown IS NOT NULL
BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (NEW.id, CAST(NEW.body AS TEXT));
END;
CREATE TRIGGER messages_fts_shown AFTER UPDATE OF shown ON messages
    WHEN OLD.shown IS NULL AND NEW.shown IS NOT NULL
BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (NEW.id, CAST(NEW.body AS TEXT));
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN OLD.shown IS NOT NULL
BEGIN
    DELETE FROM messages_fts WHERE rowid = OLD.id;
END;
"""

_V6 = """
-- Disappearing messages (issue 13). Each conversation's timer, as the latest setting of any
-- member device decided it: (set_at, set_by_account, set_by_device) orders settings, so every
-- device keeps the same one whatever order they arrived in.
CREATE TABLE conversation_timers (
    conversation   TEXT    PRIMARY KEY,
    seconds        INTEGER NOT NULL CHECK (seconds >= 0),
    set_at         REAL    NOT NULL,
    set_by_account TEXT    NOT NULL,
    set_by_device  INTEGER NOT NULL
) WITHOUT ROWID;

-- A message's own timer (0: it stays) and when it goes: set by the triggers below, from when
-- it was sent (sent ones) or first displayed or read on any of the account's devices (received
-- ones), as Signal counts. The expiry sweep deletes rows whose expires_at passed; the FTS
-- trigger of version 5 takes them out of the index in the same statement.
ALTER TABLE messages ADD COLUMN expires_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN expires_at REAL;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER messages_expire_sent AFTER INSERT ON messages
    WHEN NEW.expires_in > 0 AND NEW.direction = 1
BEGIN
    UPDATE messages SET expires_at = NEW.sent_at + NEW.expires_in WHERE id = NEW.id;
END;
CREATE TRIGGER messages_expire_seen AFTER UPDATE OF seen_at, read_at ON messages
    WHEN NEW.expires_in > 0 AND NEW.expires_at IS NULL
        AND COALESCE(NEW.seen_at, NEW.read_at) IS NOT NULL
BEGIN
    UPDATE messages SET expires_at = MIN(COALESCE(NEW.seen_at, NEW.read_at),
                                         COALESCE(NEW.read_at, NEW.seen_at)) + NEW.expires_in
        WHERE id = NEW.id;
END;
"""

_V7 = """
-- Receipts that came before the message they confirm (issue 13): a delivered or read receipt
-- for a message another device of this account sent, arriving before this device holds its
-- sent-message copy (the copy came late: a resend after a decryption failure). Kept, bounded,
-- and applied when the copy arrives, so every device of the account shows the same ticks.
CREATE TABLE early_receipts (
    id          INTEGER PRIMARY KEY,
    message_id  BLOB    NOT NULL,
    account     TEXT    NOT NULL,
    device_id   INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    at          REAL    NOT NULL,
    device_time REAL    NOT NULL,
    UNIQUE (message_id, account, device_id, status)
);
"""

_V8 = """
-- The names of this account's other devices (issue 13: `tidings devices` lists them), as each
-- told the others in a DEVICE_INFO (the relay keeps no names), and the own devices this one last
-- told its name to (JSON array of ids), so it tells each new one once.
CREATE TABLE device_names (
    device_id INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL,
    at        REAL    NOT NULL
);
CREATE TABLE name_told (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    devices TEXT    NOT NULL
);
"""

_V9 = """
-- The relay's other URLs (issue 14: its other nodes, which present the same pinned key), in
-- order of preference after identity.server_url, the preferred one. Empty: the relay has one URL
-- (every home from before).
CREATE TABLE relay_urls (
    position INTEGER PRIMARY KEY CHECK (position >= 1),
    url      TEXT    NOT NULL UNIQUE
);
"""

_V10 = """
-- Groups (issue 12; numbered after the migrations merged before it). The membership is the
-- replay of the op log (tidings.delivery.groups); groups and group_members keep its result so
-- that reads need no replay. A group's messages are ordinary rows of messages, conversation
-- 'group:<hex id>', recipient the same id for those this device sent.
CREATE TABLE groups (
    group_id   BLOB    PRIMARY KEY CHECK (length(group_id) = 16),
    name       TEXT    NOT NULL,
    updated_at REAL    NOT NULL
) WITHOUT ROWID;
CREATE TABLE group_members (
    group_id BLOB    NOT NULL,
    account  TEXT    NOT NULL,
    admin    INTEGER NOT NULL,
    PRIMARY KEY (group_id, account)
) WITHOUT ROWID;
CREATE TABLE group_ops (
    group_id BLOB NOT NULL,
    op_id    BLOB NOT NULL,
    op       BLOB NOT NULL,
    PRIMARY KEY (group_id, op_id)
) WITHOUT ROWID;
-- Sender-key records (tidings.e2e.senderkey): this device's own chain and every member
-- device's, and the member devices that were given this device's current key.
CREATE TABLE group_sender_keys (
    group_id  BLOB    NOT NULL,
    account   TEXT    NOT NULL,
    device_id INTEGER NOT NULL,
    record    BLOB    NOT NULL,
    PRIMARY KEY (group_id, account, device_id)
) WITHOUT ROWID;
CREATE TABLE group_key_given (
    group_id  BLOB    NOT NULL,
    account   TEXT    NOT NULL,
    device_id INTEGER NOT NULL,
    PRIMARY KEY (group_id, account, device_id)
) WITHOUT ROWID;
"""

_V11 = """
-- Device certificates (issue 13, docs/protocol.md §6.31). link_secrets: the secret half of each
-- link code this device issued, by the code's id, until the code expires. link_proof: this
-- device's own proof, when it was linked with a code that had a secret, sent in its DEVICE_INFO.
-- device_marks: what this device concluded of each device it checked — certified (by issuer),
-- uncertified, unchecked or invalid (with the reason) — for the identity key it checked;
-- certificate/published: a certificate this device signed, until the relay has it.
CREATE TABLE link_secrets (
    code_id    BLOB PRIMARY KEY,
    secret     BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE link_proof (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    proof BLOB    NOT NULL
);
CREATE TABLE device_marks (
    account      TEXT    NOT NULL,
    device_id    INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    issuer       INTEGER,
    reason       TEXT    NOT NULL DEFAULT '',
    identity_key BLOB,
    at           REAL    NOT NULL,
    certificate  BLOB,
    published    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
"""

_V12 = """
-- Sealed sender (issue 12, docs/protocol.md §14.1). profile_key: this account's profile key as
-- this device holds it (one row; generation, created_at, device_id order the keys of one account:
-- content_profile), and the access key of it the relay was last given (NULL: none yet).
-- contact_profile_keys: each contact's profile key, as received. profile_key_given: the profile
-- key each contact (device_id 0) and each own device (device_id > 0) was last given.
-- blocked: the contacts whose messages are dropped and who get no new profile key.
CREATE TABLE profile_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    key         BLOB    NOT NULL CHECK (length(key) = 32),
    generation  INTEGER NOT NULL,
    created_at  REAL    NOT NULL,
    device_id   INTEGER NOT NULL,
    registered  BLOB
);
CREATE TABLE contact_profile_keys (
    account TEXT PRIMARY KEY,
    key     BLOB NOT NULL CHECK (length(key) = 32),
    at      REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE profile_key_given (
    account   TEXT    NOT NULL,
    device_id INTEGER NOT NULL,
    key       BLOB    NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
CREATE TABLE blocked (
    account TEXT PRIMARY KEY,
    at      REAL NOT NULL
) WITHOUT ROWID;
"""

_V13 = """
-- Sealed sends (issue 12, docs/protocol.md §14.2). One row per outbox entry that went (or tried
-- to go) sealed: the random tag of its SEALED_SEND, chosen and stored before the first attempt so
-- that every retry reuses it (the relay stores a (recipient, tag) once); unsealed: why it fell
-- back to a normal SEND (NULL: it goes sealed); state 0 while it is in the outbox, 1 once ✓ (a
-- message whose ✗ the client asks about with TAG_QUERY until the tag is delivered, expired or
-- forgotten).
CREATE TABLE sealed_sends (
    message_id BLOB    PRIMARY KEY,
    recipient  TEXT    NOT NULL,
    tag        BLOB    NOT NULL UNIQUE CHECK (length(tag) = 16),
    unsealed   TEXT,
    state      INTEGER NOT NULL DEFAULT 0,
    created_at REAL    NOT NULL
) WITHOUT ROWID;
"""

_V14 = """
-- The device's sender certificate (sealed sender, docs/protocol.md §14.1), kept so that a
-- process that starts and sends at once (`tidings send`) can seal without waiting a round trip
-- for a new one: the relay's SENDER_CERT bytes and when they expire. One row at most; it is
-- validated again (trust root, this device, its identity key, expiry) whenever it is read.
CREATE TABLE sender_certificate (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    certificate BLOB    NOT NULL,
    expires_at  REAL    NOT NULL
);
"""

#: Every migration, in order; ``len(MIGRATIONS)`` is the schema version this code needs.
MIGRATIONS: tuple[str, ...] = (
    _V1,
    _V2,
    _V3,
    _V4,
    _V5,
    _V6,
    _V7,
    _V8,
    _V9,
    _V10,
    _V11,
    _V12,
    _V13,
    _V14,
)
