-- 0010: the idempotency records keyed by message id first. Clients make message ids that start
-- with their time in milliseconds (tidings.delivery.msgids), so with the id first a commit's new
-- records are together at the right edge of the table instead of each on a page of its own
-- (a random id lands anywhere): fewer pages written per commit (bench/README.md, "The store's
-- disk bytes"). Every lookup gives the whole key (sender account, sender device, message id),
-- so the order of its columns changes no query's plan; the purge uses sent_by_expiry.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE sent_by_id (
    message_id     BLOB    NOT NULL,
    sender_account TEXT    NOT NULL,
    sender_device  INTEGER NOT NULL,
    stored_at      REAL    NOT NULL,
    expires_at     REAL    NOT NULL,
    PRIMARY KEY (message_id, sender_account, sender_device)
) WITHOUT ROWID;

INSERT INTO sent_by_id (message_id, sender_account, sender_device, stored_at, expires_at)
SELECT message_id, sender_account, sender_device, stored_at, expires_at FROM sent;

DROP TABLE sent;
ALTER TABLE sent_by_id RENAME TO sent;

CREATE INDEX sent_by_expiry ON sent (expires_at);
