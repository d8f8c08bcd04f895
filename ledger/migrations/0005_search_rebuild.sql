-- The search index again, filled from the jobs projection by a Python step (ledger.projections
-- .rebuild_search) in the same transaction. Until now a plan's steps were never indexed: the index read
-- `steps`, and the AgentOutput names them `plan`. The table is dropped and made anew (an FTS5 table
-- deletes row by row); the rows are written as the ledger writer now writes them.
DROP TABLE IF EXISTS job_search;
CREATE VIRTUAL TABLE job_search USING fts5 (
    job_id UNINDEXED,
    description,
    plan,
    notes
);
