-- The Merkle tree over the rows (RFC 6962). Leaf i is the row at seq base_seq + i + 1; its leaf data is the
-- row's 32-byte row_hash. merkle_state holds the tree's compact range (one hash per set bit of tree_size),
-- all the writer needs to extend it; merkle_nodes the perfect subtrees of 2**level leaves for level >= 4,
-- from which proofs are read (smaller subtrees are re-hashed from the rows). The Python step that runs in
-- this transaction (ledger.tree_store.build) fills both from the rows recorded so far.
CREATE TABLE IF NOT EXISTS merkle_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    base_seq   INTEGER NOT NULL,
    tree_size  INTEGER NOT NULL,
    frontier   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Signed tree heads, each as a C2SP tlog-checkpoint signed note (origin, size, base64 root; Ed25519).
CREATE TABLE IF NOT EXISTS tree_checkpoints (
    checkpoint_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    tree_size      INTEGER NOT NULL,
    root_hash      TEXT NOT NULL,
    head_seq       INTEGER NOT NULL,
    head_hash      TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    note           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tree_checkpoints_size ON tree_checkpoints (tree_size);

-- The tree's compact range where a compaction cut the chain, so that verify can go on rebuilding the tree
-- from the rows left in the file (a wrong one shows as roots that miss the signed checkpoints).
CREATE TABLE IF NOT EXISTS merkle_cuts (
    through_seq  INTEGER PRIMARY KEY,
    tree_size    INTEGER NOT NULL,
    frontier     BLOB NOT NULL
);
