"""The ledger's SQLite schema: the append-only `events` table and the `jobs` projection built from it."""

from __future__ import annotations

import aiosqlite

from ledger.errors import SchemaTooNew

# Kept in `PRAGMA user_version`. This first cut only knows version 1 and creates it in place;
# numbered, step-by-step migrations (hash chain columns, ...) arrive with a later issue.
SCHEMA_VERSION = 1

# Same text format as the producers' created_at (ISO-8601 UTC, milliseconds, "Z"), so both sort as text.
_NOW_SQL = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

DDL: tuple[str, ...] = (
    f"""
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
        payload      TEXT NOT NULL DEFAULT '{{}}',
        recorded_at  TEXT NOT NULL DEFAULT {_NOW_SQL}
    )
    """,
    "CREATE INDEX IF NOT EXISTS events_job ON events (job_id)",
    "CREATE INDEX IF NOT EXISTS events_agent_time ON events (agent_id, created_at)",
    "CREATE INDEX IF NOT EXISTS events_tenant_time ON events (tenant_id, created_at)",
    "CREATE INDEX IF NOT EXISTS events_kind ON events (kind)",
    """
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
    )
    """,
)


async def apply_schema(conn: aiosqlite.Connection) -> None:
    """Create the tables and indexes if missing and stamp the schema version, in one transaction."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        for statement in DDL:
            await conn.execute(statement)
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
