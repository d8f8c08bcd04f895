-- The first cut of the ledger: the append-only events table and the jobs projection.
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    job_id       TEXT,
    agent_id     TEXT,
    tenant_id    TEXT,
    created_at   TEXT,
    attempt      INTEGER,
    worker       TEXT,
    decision     TEXT,
    reason       TEXT,
    model        TEXT,
    payload      TEXT NOT NULL DEFAULT '{}',
    recorded_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
CREATE INDEX IF NOT EXISTS events_agent_time ON events (agent_id, created_at);
CREATE INDEX IF NOT EXISTS events_tenant_time ON events (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind);
CREATE TABLE IF NOT EXISTS jobs (
    job_id       TEXT PRIMARY KEY,
    agent_id     TEXT,
    tenant_id    TEXT,
    task_type    TEXT,
    description  TEXT,
    state        TEXT NOT NULL,
    decision     TEXT,
    reason       TEXT,
    model        TEXT,
    submitted_at TEXT,
    finished_at  TEXT,
    output       TEXT
);
