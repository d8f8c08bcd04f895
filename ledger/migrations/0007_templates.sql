-- The agent template catalogue (the seed's marketplace tables): published versions, immutable once
-- written (their content and hash never change; only `yanked` does), one full-text row per template
-- (its latest installable version), ratings, and the publisher keys an admin trusts.
CREATE TABLE IF NOT EXISTS template_versions (
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    major         INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    content       TEXT NOT NULL,
    summary       TEXT NOT NULL,
    tier          INTEGER NOT NULL,
    side_effects  TEXT NOT NULL DEFAULT '[]',
    signer        TEXT NOT NULL DEFAULT '',
    signature     TEXT NOT NULL DEFAULT '',
    published_by  TEXT NOT NULL DEFAULT '',
    published_at  TEXT NOT NULL,
    yanked        INTEGER NOT NULL DEFAULT 0,
    yanked_reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS templates (
    template_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    latest        TEXT,
    tier          INTEGER,
    side_effects  TEXT NOT NULL DEFAULT '[]'
);
-- Porter stemming: `plans` finds `plan`, `rollouts` finds `rollout`.
CREATE VIRTUAL TABLE IF NOT EXISTS template_search USING fts5 (
    name,
    summary,
    description,
    tags,
    tokenize = 'porter unicode61'
);
CREATE TABLE IF NOT EXISTS template_ratings (
    name      TEXT NOT NULL,
    version   TEXT NOT NULL,
    rater     TEXT NOT NULL,
    stars     INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment   TEXT NOT NULL DEFAULT '',
    rated_at  TEXT NOT NULL,
    PRIMARY KEY (name, version, rater)
);
CREATE TABLE IF NOT EXISTS template_publishers (
    key_id      TEXT PRIMARY KEY,
    publisher   TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    added_by    TEXT NOT NULL DEFAULT '',
    added_at    TEXT NOT NULL
);
