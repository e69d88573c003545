-- 0011: sealed sender (docs/protocol.md §14). Per account, its unidentified-access key: the
-- 16 bytes a sealed send must name (derived by the clients from the account's profile key; the
-- relay never sees the profile key). A new key replaces the old one: that is how blocking a
-- contact rotates it. Accounts are never deleted, so neither are their rows.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE access_keys (
    account    TEXT NOT NULL PRIMARY KEY,
    access_key BLOB NOT NULL
) WITHOUT ROWID;
