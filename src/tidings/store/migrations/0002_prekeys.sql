-- 0002: the prekeys of X3DH/PQXDH, per device: opaque bytes the relay hands out unchanged.
-- prekey_owners holds what every fetch hands out again (identity key, signed prekey, the
-- last-resort KEM prekey); one_time_prekeys what one fetch takes and deletes. A fetch takes the
-- lowest key id of a kind: the primary key is that order, so it is one range seek.
-- No transaction control here: the runner wraps each file in one transaction.

CREATE TABLE prekey_owners (
    account               TEXT    NOT NULL,
    device_id             INTEGER NOT NULL,
    identity_key          BLOB    NOT NULL,  -- never changes once stored
    signed_id             INTEGER NOT NULL,
    signed_public         BLOB    NOT NULL,
    signed_signature      BLOB    NOT NULL,
    last_resort_id        INTEGER,           -- NULL: no last-resort KEM prekey uploaded
    last_resort_public    BLOB,
    last_resort_signature BLOB,
    updated_at            REAL    NOT NULL,
    PRIMARY KEY (account, device_id)
) WITHOUT ROWID;

CREATE TABLE one_time_prekeys (
    account     TEXT    NOT NULL,
    device_id   INTEGER NOT NULL,
    kind        INTEGER NOT NULL,  -- 0: one-time X25519 prekey, 1: one-time ML-KEM prekey
    key_id      INTEGER NOT NULL,
    public      BLOB    NOT NULL,
    signature   BLOB    NOT NULL,  -- empty for kind 0
    uploaded_at REAL    NOT NULL,
    PRIMARY KEY (account, device_id, kind, key_id)
) WITHOUT ROWID;
