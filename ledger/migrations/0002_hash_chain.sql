-- The hash chain and the audit columns: who, where, source, outcome, and the versions in force.
-- Rows from before this migration get their audit columns and hashes from the Python backfill that
-- runs in the same transaction (ledger.chain.backfill), in seq order.
ALTER TABLE events ADD COLUMN host TEXT;
ALTER TABLE events ADD COLUMN reviewer TEXT;
ALTER TABLE events ADD COLUMN source TEXT;
ALTER TABLE events ADD COLUMN outcome TEXT;
ALTER TABLE events ADD COLUMN schema_version INTEGER;
ALTER TABLE events ADD COLUMN policy_version TEXT;
ALTER TABLE events ADD COLUMN prev_hash TEXT;
ALTER TABLE events ADD COLUMN row_hash TEXT;
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
CREATE INDEX IF NOT EXISTS events_decision ON events (decision);

-- An accident (a stray UPDATE or DELETE) fails loudly; only a row not yet sealed may be filled in.
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
WHEN OLD.row_hash IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'ledger events are append-only');
END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'ledger events are append-only');
END;

-- Signed chain heads: (head seq, head hash, row count) signed with the writer's Ed25519 key.
CREATE TABLE IF NOT EXISTS anchors (
    anchor_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    head_seq     INTEGER NOT NULL,
    head_hash    TEXT NOT NULL,
    row_count    INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    signature    TEXT NOT NULL
);

-- Where compaction cut the chain: rows up to through_seq live in a sealed archive file.
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    through_seq    INTEGER NOT NULL,
    through_hash   TEXT NOT NULL,
    archived_rows  INTEGER NOT NULL,
    total_rows     INTEGER NOT NULL,
    archive_file   TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    signature      TEXT NOT NULL
);
