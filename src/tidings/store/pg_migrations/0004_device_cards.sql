-- 0004 (PostgreSQL): per device, its certificate (opaque) and when it was last connected
-- (coarse), as the SQLite store's migration 0009. Keyed by the account first, as every table
-- (see 0001). No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE device_cards (
    account     text COLLATE "C" NOT NULL,
    device_id   integer          NOT NULL,
    certificate bytea,
    last_seen   double precision,
    PRIMARY KEY (account, device_id)
);
