-- 0001 (PostgreSQL): the relay's whole schema as the SQLite store has it at its version 6:
-- accounts, devices with their inbox counters, link codes, per-device inboxes, idempotency
-- records, contacts, prekeys and the health probe's row.
-- No transaction control here: the runner wraps each file in one transaction.
--
-- Scale-out: every table's primary key starts with the account (or the sender's account), so
-- a distributed PostgreSQL (Citus) can distribute each table by that column and co-locate an
-- account's devices, inboxes and prekeys without a schema change. The inbox, the only table
-- that grows with traffic, is hash-partitioned by device already: a device's items are in one
-- partition, each partition is vacuumed on its own, and its (device, seq) key is that of every
-- hot query (fetch, the cumulative ack). Account names compare as bytes (COLLATE "C"), as in
-- SQLite and in Python, so every backend orders them alike, whatever the database's locale.

CREATE TABLE accounts (
    account        text COLLATE "C" NOT NULL PRIMARY KEY,
    next_device_id integer          NOT NULL,  -- device ids are never reused
    created_at     double precision NOT NULL
);

CREATE TABLE devices (
    account    text COLLATE "C" NOT NULL,
    device_id  integer          NOT NULL,
    noise_key  bytea            NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    -- Highest seq ever assigned: never reused. Every write to the device's inbox locks this row
    -- (SELECT ... FOR UPDATE), so nodes writing concurrently take seqs one after the other.
    last_seq   bigint           NOT NULL DEFAULT 0,
    depth      integer          NOT NULL DEFAULT 0,  -- items queued now: limits cost no COUNT
    strangers  integer          NOT NULL DEFAULT 0,  -- of them, items from strangers
    PRIMARY KEY (account, device_id)
);

CREATE TABLE link_codes (
    account    text COLLATE "C" NOT NULL,
    code_hash  bytea            NOT NULL,
    issued_by  integer          NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (account, code_hash)
);

CREATE INDEX link_codes_by_expiry ON link_codes (expires_at);

CREATE TABLE inbox (
    account        text COLLATE "C" NOT NULL,
    device_id      integer          NOT NULL,
    seq            bigint           NOT NULL,
    kind           smallint         NOT NULL,  -- tidings.store.base.ItemKind
    sender_account text COLLATE "C" NOT NULL,
    sender_device  integer          NOT NULL,
    message_id     bytea            NOT NULL,
    payload        bytea            NOT NULL,
    enqueued_at    double precision NOT NULL,
    expires_at     double precision NOT NULL,
    stranger       boolean          NOT NULL DEFAULT false,  -- queued from a stranger
    PRIMARY KEY (account, device_id, seq)
) PARTITION BY HASH (account, device_id);

-- Eight partitions: enough that vacuum and the expiry index stay per-part small on one node;
-- a later split is a new migration (PostgreSQL cannot change a modulus in place).
CREATE TABLE inbox_p0 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE inbox_p1 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE inbox_p2 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE inbox_p3 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE inbox_p4 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE inbox_p5 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE inbox_p6 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE inbox_p7 PARTITION OF inbox FOR VALUES WITH (MODULUS 8, REMAINDER 7);

-- Expiry takes the oldest first, in exactly this order (a merge of the partitions' indexes).
CREATE INDEX inbox_by_expiry ON inbox (expires_at, account, device_id, seq);

CREATE TABLE sent (
    sender_account text COLLATE "C" NOT NULL,
    sender_device  integer          NOT NULL,
    message_id     bytea            NOT NULL,
    stored_at      double precision NOT NULL,
    expires_at     double precision NOT NULL,
    PRIMARY KEY (sender_account, sender_device, message_id)
);

CREATE INDEX sent_by_expiry ON sent (expires_at);

CREATE TABLE contacts (
    account text COLLATE "C" NOT NULL,  -- the account that sent
    contact text COLLATE "C" NOT NULL,  -- the account it sent to
    PRIMARY KEY (account, contact)
);

CREATE TABLE prekey_owners (
    account               text COLLATE "C" NOT NULL,
    device_id             integer          NOT NULL,
    identity_key          bytea            NOT NULL,  -- never changes once stored
    signed_id             bigint           NOT NULL,
    signed_public         bytea            NOT NULL,
    signed_signature      bytea            NOT NULL,
    last_resort_id        bigint,                     -- NULL: no last-resort KEM prekey
    last_resort_public    bytea,
    last_resort_signature bytea,
    updated_at            double precision NOT NULL,
    PRIMARY KEY (account, device_id)
);

CREATE TABLE one_time_prekeys (
    account     text COLLATE "C" NOT NULL,
    device_id   integer          NOT NULL,
    kind        smallint         NOT NULL,  -- 0: one-time X25519 prekey, 1: one-time ML-KEM
    key_id      bigint           NOT NULL,
    public      bytea            NOT NULL,
    signature   bytea            NOT NULL,  -- empty for kind 0
    uploaded_at double precision NOT NULL,
    PRIMARY KEY (account, device_id, kind, key_id)
);

-- One row the health probe rewrites: a write that changes nothing the store means.
CREATE TABLE probe (
    id      integer PRIMARY KEY CHECK (id = 1),
    flipped boolean NOT NULL
);

INSERT INTO probe (id, flipped) VALUES (1, false);
