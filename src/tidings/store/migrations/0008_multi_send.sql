-- 0008: multi-recipient sends (MULTI_SEND, issue 12). The ciphertext all recipient devices
-- share is stored once in ``shared_bodies``; each device's inbox row holds its own part in
-- ``payload`` and the body's id in ``shared_id`` (NULL: a one-to-one item). ``refs`` counts the
-- rows that refer to a body; the trigger drops the body with the last of them, whatever deletes
-- it (an ack, expiry, an unlinked device), in the same transaction.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE shared_bodies (
    id   INTEGER PRIMARY KEY,
    body BLOB    NOT NULL,
    refs INTEGER NOT NULL  -- inbox rows whose shared_id is this id
);

ALTER TABLE inbox ADD COLUMN shared_id INTEGER;

CREATE TRIGGER inbox_shared_unref AFTER DELETE ON inbox WHEN old.shared_id IS NOT NULL
BEGIN
    UPDATE shared_bodies SET refs = refs - 1 WHERE id = old.shared_id;
    DELETE FROM shared_bodies WHERE id = old.shared_id AND refs <= 0;
END;
