-- 0006: one row the health probe rewrites to learn whether the disk takes a write again:
-- 64 KiB (64 pages of 1 KiB), more than the tail a failed batch of sends leaves allocated in the
-- WAL, which a one-page write would still fit in on a full disk (tidings.store.sqlite._probe).
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pad BLOB    NOT NULL
);

INSERT INTO probe (id, pad) VALUES (1, zeroblob(65536));
