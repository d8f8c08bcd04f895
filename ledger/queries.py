"""Reading the ledger: events of a job, a job's projection row, counts, and `show_job` for the CLI."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ledger.errors import LedgerNotFound

_EVENT_SELECT = (
    "SELECT seq, event_id, kind, job_id, agent_id, tenant_id, created_at, attempt, worker,"
    " decision, reason, model, payload, recorded_at FROM events"
)


def _row_dict(cursor: aiosqlite.Cursor, row: Sequence[Any]) -> dict[str, Any]:
    """One row as a plain dict keyed by column name."""
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def _read_only_uri(file: Path) -> str:
    """A read-only SQLite URI for an existing ledger file (mode=ro never creates one)."""
    if not file.is_file():
        raise LedgerNotFound(str(file))
    return f"{file.resolve().as_uri()}?mode=ro"


def _parse_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def fetch_job_events(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    """All events of one job in the order they were recorded, payload parsed back to JSON data."""
    async with conn.execute(f"{_EVENT_SELECT} WHERE job_id = ? ORDER BY seq", (job_id,)) as cur:
        rows = await cur.fetchall()
    events = [_row_dict(cur, row) for row in rows]
    for event in events:
        event["payload"] = _parse_json(event["payload"])
    return events


async def fetch_job(conn: aiosqlite.Connection, job_id: str) -> dict[str, Any] | None:
    """The job's projection row (output parsed), or None if the ledger has never seen the job."""
    async with conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
        if row is None:
            return None
        job = _row_dict(cur, row)
    job["output"] = _parse_json(job["output"])
    return job


async def count_events(conn: aiosqlite.Connection, kind: str | None = None) -> int:
    """How many events are recorded, of one kind or of all kinds."""
    if kind is None:
        sql, params = "SELECT count(*) FROM events", ()
    else:
        sql, params = "SELECT count(*) FROM events WHERE kind = ?", (kind,)
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def show_job(path: str | os.PathLike[str], job_id: str) -> dict[str, Any]:
    """`plangate ledger show JOB_ID --json`: {"job_id": ..., "events": [...]}; opens the file read-only."""
    uri = await asyncio.to_thread(_read_only_uri, Path(path))
    async with aiosqlite.connect(uri, uri=True) as conn:
        await conn.execute("PRAGMA busy_timeout = 10000")
        events = await fetch_job_events(conn, job_id)
    return {"job_id": job_id, "events": events}
