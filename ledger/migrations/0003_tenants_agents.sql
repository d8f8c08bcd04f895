-- The seed's multi-tenant schema, projected from the events: tenants, their projects, and a
-- snapshot of an agent's registry state at every change (revoked, restored, suspended, budget reset).
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id     TEXT PRIMARY KEY,
    first_seen_at TEXT,
    last_seen_at  TEXT,
    jobs          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS projects (
    project_id    TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    first_seen_at TEXT,
    last_seen_at  TEXT,
    jobs          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, project_id)
);
CREATE TABLE IF NOT EXISTS agents (
    snapshot_id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT NOT NULL,
    event_id    TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    revoked     INTEGER NOT NULL,
    suspended   INTEGER NOT NULL,
    changed_by  TEXT,
    reason      TEXT,
    changed_at  TEXT
);
CREATE INDEX IF NOT EXISTS agents_agent ON agents (agent_id, snapshot_id);

INSERT OR IGNORE INTO tenants (tenant_id, first_seen_at, last_seen_at, jobs)
SELECT tenant_id, min(created_at), max(created_at), count(*) FROM events
WHERE kind = 'submitted' AND tenant_id IS NOT NULL GROUP BY tenant_id;
