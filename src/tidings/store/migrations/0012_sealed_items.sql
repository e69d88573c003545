-- 0012: sealed sends (docs/protocol.md §14.2). A sealed item is an inbox row of kind 3 with no
-- sender (sender_account '', sender_device 0) and the sender's tag as message_id. Per sealed
-- send, one tag record: the recipient, the tag, how many of its device copies are still
-- queued, whether one expired unfetched, when it was stored and when the record is forgotten
-- (its items' expiry plus TAG_RETENTION). It is also the send's idempotency record. Nothing
-- here names a sender. The trigger takes a copy off with its row, whatever deletes it (an ack,
-- expiry, a removed device), in the same transaction; expiry sets `expired` itself.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE sealed_tags (
    tag       BLOB    NOT NULL,
    recipient TEXT    NOT NULL,
    queued    INTEGER NOT NULL,  -- device copies still in their queues
    expired   INTEGER NOT NULL DEFAULT 0,  -- 1: a copy expired unfetched
    stored_at REAL    NOT NULL,
    forget_at REAL    NOT NULL,
    PRIMARY KEY (tag, recipient)
) WITHOUT ROWID;

CREATE INDEX sealed_tags_by_forget ON sealed_tags (forget_at);

CREATE TRIGGER inbox_sealed_gone AFTER DELETE ON inbox WHEN old.kind = 3
BEGIN
    UPDATE sealed_tags SET queued = queued - 1
        WHERE tag = old.message_id AND recipient = old.account;
END;
