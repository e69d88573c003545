-- 0013: expiry in arrival order, without an index on expires_at for every row. At the relay
-- every item expires one retention period after it arrives, so the inbox's rowid order is its
-- expiry order and `inbox_by_expiry` only repeated it, at the cost of an index write for every
-- insert and delete. `out_of_order` is 0 for a row that expires no earlier than every row
-- flagged 0 before it (those rows, by rowid, are in expiry order: expiry reads them from the
-- start of the table), 1 for any other; only those are indexed, by the partial index below
-- (tidings.store._expiry_order). Existing rows get their flag from the rows before them
-- (the running maximum of expires_at in rowid order); a later insert always names the flag.
-- No transaction control here: the runner wraps each file in one transaction.

ALTER TABLE inbox ADD COLUMN out_of_order INTEGER NOT NULL DEFAULT 1;

UPDATE inbox SET out_of_order = 0 WHERE id IN (
    SELECT id FROM (
        SELECT id, expires_at, max(expires_at) OVER (
            ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS before
        FROM inbox
    )
    WHERE before IS NULL OR expires_at >= before
);

DROP INDEX inbox_by_expiry;

CREATE INDEX inbox_expiring_out_of_order ON inbox (expires_at, account, device_id, seq)
    WHERE out_of_order = 1;
