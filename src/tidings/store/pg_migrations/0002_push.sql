-- 0002 (PostgreSQL): Web Push subscriptions (issue 13), as the SQLite store's migration 0007:
-- one per device, with the durable wake-up state the relay's push sender works from: a
-- wake-up pending (wake_since), its attempts, when to try again, when the push service last
-- accepted one, and whether the endpoint is dead (404/410). Keyed by the account first, as
-- every table (see 0001). No transaction control here: the runner wraps each file in one
-- transaction.

CREATE TABLE push_subscriptions (
    account       text COLLATE "C" NOT NULL,
    device_id     integer          NOT NULL,
    endpoint      text             NOT NULL,
    p256dh        bytea            NOT NULL,
    auth          bytea            NOT NULL,
    created_at    double precision NOT NULL,
    dead          boolean          NOT NULL DEFAULT false,
    wake_since    double precision,            -- NULL: no wake-up pending
    wake_attempts integer          NOT NULL DEFAULT 0,
    wake_next     double precision,
    wake_sent_at  double precision,
    PRIMARY KEY (account, device_id)
);
