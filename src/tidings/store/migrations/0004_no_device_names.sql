-- 0004: device names are not kept: routing needs the id and the key, and a name ("Alice's
-- work laptop") tells whoever reads the relay's disk more than the relay needs (G6). The
-- store runs VACUUM once after this step, so the pages that held names are rewritten.
-- No transaction control here: the runner wraps each file in one transaction.

ALTER TABLE devices DROP COLUMN name;
