-- 0007: Web Push subscriptions (issue 13), one per device, with the durable wake-up state the
-- relay's push sender works from: a wake-up pending (wake_since), its attempts, when to try
-- again, when the push service last accepted one, and whether the endpoint is dead (404/410).
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE push_subscriptions (
    account       TEXT    NOT NULL,
    device_id     INTEGER NOT NULL,
    endpoint      TEXT    NOT NULL,
    p256dh        BLOB    NOT NULL,
    auth          BLOB    NOT NULL,
    created_at    REAL    NOT NULL,
    dead          INTEGER NOT NULL DEFAULT 0,
    wake_since    REAL,
    wake_attempts INTEGER NOT NULL DEFAULT 0,
    wake_next     REAL,
    wake_sent_at  REAL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
