-- 0003 (PostgreSQL): multi-recipient sends (MULTI_SEND, issue 12), as the SQLite store's
-- migration 0008. The ciphertext all recipient devices share is stored once in
-- ``shared_bodies``; each device's inbox row holds its own part in ``payload`` and the body's
-- id in ``shared_id`` (NULL: a one-to-one item). ``refs`` counts the rows that refer to a body;
-- the row trigger drops the body with the last of them, whatever deletes it (an ack, expiry, an
-- unlinked device), in the same transaction. The UPDATE locks the body's row, so deletions on
-- several nodes count down one at a time. No transaction control here: the runner wraps each
-- file in one transaction.

CREATE TABLE shared_bodies (
    id   bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body bytea   NOT NULL,
    refs integer NOT NULL  -- inbox rows whose shared_id is this id
);

ALTER TABLE inbox ADD COLUMN shared_id bigint;

CREATE FUNCTION inbox_shared_unref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE shared_bodies SET refs = refs - 1 WHERE id = OLD.shared_id;
    DELETE FROM shared_bodies WHERE id = OLD.shared_id AND refs <= 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER inbox_shared_unref AFTER DELETE ON inbox
    FOR EACH ROW WHEN (OLD.shared_id IS NOT NULL) EXECUTE FUNCTION inbox_shared_unref();
