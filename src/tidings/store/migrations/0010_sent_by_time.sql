-- 0010: the idempotency records keyed by the end of their message id first. Clients make ids
-- that end with their time in milliseconds (tidings.delivery.msgids); the record's key `id_key`
-- is the id with its last 6 bytes moved to the front (tidings.store._lookup.record_key), so a
-- commit's new records are together at the right edge of the table instead of each on a page
-- of its own (a random key lands anywhere): fewer pages written per commit (bench/README.md,
-- "The store's disk bytes"). Every lookup gives the whole key, so the order of its columns
-- changes no query's plan; the purge uses sent_by_expiry. The rotation below is done on blobs
-- (|| makes text of them; the CAST gives back the same bytes).
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE sent_by_key (
    id_key         BLOB    NOT NULL,  -- the message id, its last 6 bytes first
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    stored_at      REAL    NOT NULL,
    expires_at     REAL    NOT NULL,
    PRIMARY KEY (id_key, sender_account, sender_device)
) WITHOUT ROWID;

INSERT INTO sent_by_key (id_key, sender_account, sender_device, stored_at, expires_at)
SELECT CAST(substr(message_id, -6) || substr(message_id, 1, length(message_id) - 6) AS BLOB),
    sender_account, sender_device, stored_at, expires_at
FROM sent;

DROP TABLE sent;
ALTER TABLE sent_by_key RENAME TO sent;

CREATE INDEX sent_by_expiry ON sent (expires_at);
