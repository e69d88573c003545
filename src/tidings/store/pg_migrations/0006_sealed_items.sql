-- 0006 (PostgreSQL): sealed sends, as the SQLite store's migration 0012. A sealed item is an
-- inbox row of kind 3 with no sender ('' and 0) and the sender's tag as message_id. Per sealed
-- send, one tag record: the tag, the recipient, the device copies still queued, whether one
-- expired unfetched, when it was stored and when it is forgotten (its items' expiry plus
-- TAG_RETENTION); it is also the send's idempotency record. Nothing here names a sender. The
-- row trigger takes a copy off with its row, whatever deletes it (an ack, expiry, a removed
-- device), in the same transaction; the UPDATE locks the record, so deletions on several nodes
-- count down one at a time. No transaction control here: the runner wraps each file in one
-- transaction.

CREATE TABLE sealed_tags (
    tag       bytea            NOT NULL,
    recipient text COLLATE "C" NOT NULL,
    queued    integer          NOT NULL,  -- device copies still in their queues
    expired   boolean          NOT NULL DEFAULT false,  -- a copy expired unfetched
    stored_at double precision NOT NULL,
    forget_at double precision NOT NULL,
    PRIMARY KEY (tag, recipient)
);

CREATE INDEX sealed_tags_by_forget ON sealed_tags (forget_at);

CREATE FUNCTION inbox_sealed_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sealed_tags SET queued = queued - 1
        WHERE tag = OLD.message_id AND recipient = OLD.account;
    RETURN NULL;
END
$$;

CREATE TRIGGER inbox_sealed_gone AFTER DELETE ON inbox
    FOR EACH ROW WHEN (OLD.kind = 3) EXECUTE FUNCTION inbox_sealed_gone();
