-- Full-text search over what humans read: a job's description, its plan, its notes for humans.
-- A job's search row has the rowid of its jobs row (job_id is not indexed in an FTS table).
CREATE VIRTUAL TABLE IF NOT EXISTS job_search USING fts5 (
    job_id UNINDEXED,
    description,
    plan,
    notes
);
INSERT INTO job_search (rowid, job_id, description, plan, notes)
SELECT rowid, job_id,
       coalesce(description, ''),
       coalesce(json_extract(output, '$.output.steps'), ''),
       coalesce(json_extract(output, '$.output.notes_for_humans'), '')
FROM jobs WHERE json_valid(coalesce(output, '{}'));
