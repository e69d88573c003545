-- 0001: accounts, devices, link codes, per-device inboxes and idempotency records.
-- Clustered (WITHOUT ROWID) on the keys every hot query walks: an inbox is one contiguous
-- range of (account, device_id, seq), so fetch and the cumulative ack are range scans.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE accounts (
    account        TEXT    NOT NULL PRIMARY KEY,
    next_device_id INTEGER NOT NULL,  -- device ids are never reused
    created_at     REAL    NOT NULL
) WITHOUT ROWID;

CREATE TABLE devices (
    account    TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    noise_key  BLOB    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    last_seq   INTEGER NOT NULL DEFAULT 0,  -- highest seq ever assigned: never reused
    depth      INTEGER NOT NULL DEFAULT 0,  -- items queued now: the queue limit costs no COUNT
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;

CREATE TABLE link_codes (
    account    TEXT    NOT NULL,
    code_hash  BLOB    NOT NULL,
    issued_by  INTEGER NOT NULL,
    created_at REAL    NOT NULL,
    expires_at REAL    NOT NULL,
    PRIMARY KEY (account, code_hash)
) WITHOUT ROWID;

CREATE TABLE inbox (
    account        TEXT    NOT NULL,
    device_id      INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    kind           INTEGER NOT NULL,  -- tidings.store.base.ItemKind
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    message_id     BLOB    NOT NULL,
    payload        BLOB    NOT NULL,
    enqueued_at    REAL    NOT NULL,
    expires_at     REAL    NOT NULL,
    PRIMARY KEY (account, device_id, seq)
) WITHOUT ROWID;

-- Expiry takes the oldest first; the index also carries the primary key, so it is the order.
CREATE INDEX inbox_by_expiry ON inbox (expires_at);

CREATE TABLE sent (
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    message_id     BLOB    NOT NULL,
    stored_at      REAL    NOT NULL,
    expires_at     REAL    NOT NULL,
    PRIMARY KEY (sender_account, sender_device, message_id)
) WITHOUT ROWID;

CREATE INDEX sent_by_expiry ON sent (expires_at);
