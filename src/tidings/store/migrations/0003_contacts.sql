-- 0003: contacts, and the share of a device's queue that senders it never wrote to may fill.
-- contacts holds (account, contact) once `account` sent anything to `contact`: then `contact`
-- is no stranger to `account`'s devices. inbox.stranger marks an item queued from a stranger;
-- devices.strangers counts them, kept in step like depth, so the share check costs no COUNT.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE contacts (
    account TEXT NOT NULL,  -- the account that sent
    contact TEXT NOT NULL,  -- the account it sent to
    PRIMARY KEY (account, contact)
) WITHOUT ROWID;

ALTER TABLE devices ADD COLUMN strangers INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN stranger INTEGER NOT NULL DEFAULT 0;
