-- 0005: the inbox in arrival order. Rows were clustered by (account, device_id, seq), so every
-- commit rewrote a page (4 KiB of WAL) in the range of each device it queued to or acked for;
-- in arrival order the rows a commit inserts are together at the end of the table, and those
-- acked soon after are near them. A device's range is the index below, whose entries are small
-- (about 20 bytes: many devices share a page). ``expires_at`` keeps its exact order for expiry.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE inbox_by_arrival (
    id             INTEGER PRIMARY KEY,  -- arrival order (a rowid: never shown, may be reused)
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
    stranger       INTEGER NOT NULL DEFAULT 0
);

INSERT INTO inbox_by_arrival (account, device_id, seq, kind, sender_account, sender_device,
    message_id, payload, enqueued_at, expires_at, stranger)
SELECT account, device_id, seq, kind, sender_account, sender_device, message_id, payload,
    enqueued_at, expires_at, stranger
FROM inbox ORDER BY enqueued_at, account, device_id, seq;

DROP TABLE inbox;
ALTER TABLE inbox_by_arrival RENAME TO inbox;

CREATE UNIQUE INDEX inbox_by_device ON inbox (account, device_id, seq);
CREATE INDEX inbox_by_expiry ON inbox (expires_at, account, device_id, seq);
