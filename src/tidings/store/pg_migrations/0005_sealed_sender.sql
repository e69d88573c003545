-- 0005 (PostgreSQL): sealed sender, as the SQLite store's migration 0011: per account, its
-- unidentified-access key (replaced whole by a new one). No transaction control here: the
-- runner wraps each file in one transaction.

CREATE TABLE access_keys (
    account    text COLLATE "C" NOT NULL PRIMARY KEY,
    access_key bytea            NOT NULL
);
