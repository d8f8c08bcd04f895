-- Full-text search over what humans read: a job's description, its plan, its notes for humans.
-- A job's search row has the rowid of its jobs row (job_id is not indexed in an FTS table).
-- (Migration 5 rebuilds this index with the text of each step; until then it read `$.output.steps`.)
CREATE VIRTUAL TABLE IF NOT EXISTS job_search USING fts5 (
    job_id UNINDEXED,
    description,
    plan,
    notes
);
INSERT INTO job_search (rowid, job_id, description, plan, notes)
SELECT rowid, job_id,
       coalesce(description, ''),
       coalesce(json_extract(output, '$.output.plan'), ''),
       coalesce(json_extract(output, '$.output.notes_for_humans'), '')
FROM jobs WHERE json_valid(coalesce(output, '{}'));
