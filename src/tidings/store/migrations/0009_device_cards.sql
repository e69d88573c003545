-- 0009: per device, the certificate another device of its account signed for it (opaque bytes:
-- the relay never reads them, contacts check them; docs/protocol.md §6.31) and when it was last
-- connected, coarse (rounded down to the hour by the relay: one value per device, not a
-- timeline). A row appears with the first of the two; it goes with its device.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE device_cards (
    account     TEXT    NOT NULL,
    device_id   INTEGER NOT NULL,
    certificate BLOB,
    last_seen   REAL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;
