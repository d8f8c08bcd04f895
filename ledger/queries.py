"""Reading the ledger: a job's events, filtered event lists (tail, export), full-text search, anchors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ledger.errors import LedgerError, LedgerNotFound
from plangate_base import codec
from plangate_base.clock import iso

_EVENT_SELECT = "SELECT * FROM events"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to list: by agent, tenant, decision, kind, job and a created_at range [since, until)."""

    agent_id: str | None = None
    tenant_id: str | None = None
    decision: str | None = None
    kind: str | None = None
    job_id: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self, time_column: str = "created_at") -> tuple[str, tuple[Any, ...]]:
        """A SQL condition (starting with WHERE, or empty) and its parameters."""
        terms: list[str] = []
        params: list[Any] = []
        for column in ("agent_id", "tenant_id", "decision", "kind", "job_id"):
            value = getattr(self, column)
            if value is not None:
                terms.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            terms.append(f"{time_column} >= ?")
            params.append(normalize_time(self.since))
        if self.until is not None:
            terms.append(f"{time_column} < ?")
            params.append(normalize_time(self.until))
        return (f" WHERE {' AND '.join(terms)}" if terms else ""), tuple(params)


def normalize_time(text: str) -> str:
    """ISO-8601 text (a date, or a time with any offset) as the ledger's UTC form, which sorts as text."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise LedgerError(f"not an ISO-8601 time: {text!r}") from exc
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return iso(at)


def _row_dict(cursor: aiosqlite.Cursor, row: Sequence[Any]) -> dict[str, Any]:
    """One row as a plain dict keyed by column name."""
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def _parse_json(text: str | None) -> Any:
    return None if text is None else codec.loads(text)


def _event(cursor: aiosqlite.Cursor, row: Sequence[Any]) -> dict[str, Any]:
    event = _row_dict(cursor, row)
    event["payload"] = _parse_json(event["payload"])
    return event


def _read_only_uri(file: Path) -> str:
    if not file.is_file():
        raise LedgerNotFound(str(file))
    return f"{file.resolve().as_uri()}?mode=ro"


@asynccontextmanager
async def read_only(path: str | os.PathLike[str]) -> AsyncIterator[aiosqlite.Connection]:
    """A read-only connection to an existing ledger file (mode=ro never creates one)."""
    uri = await asyncio.to_thread(_read_only_uri, Path(path))
    async with aiosqlite.connect(uri, uri=True) as conn:
        await conn.execute("PRAGMA busy_timeout = 10000")
        yield conn


async def fetch_job_events(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    """All events of one job in the order they were recorded, payload parsed back to JSON data."""
    async with conn.execute(f"{_EVENT_SELECT} WHERE job_id = ? ORDER BY seq", (job_id,)) as cur:
        return [_event(cur, row) for row in await cur.fetchall()]


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
    async with read_only(path) as conn:
        events = await fetch_job_events(conn, job_id)
    return {"job_id": job_id, "events": events}


async def fetch_events(
    conn: aiosqlite.Connection, flt: EventFilter, after_seq: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Events matching `flt` with seq > after_seq, oldest first, at most `limit`."""
    where, params = flt.where()
    where = f"{where} AND seq > ?" if where else " WHERE seq > ?"
    sql = f"{_EVENT_SELECT}{where} ORDER BY seq" + (" LIMIT ?" if limit is not None else "")
    args = (*params, after_seq, *((limit,) if limit is not None else ()))
    async with conn.execute(sql, args) as cur:
        return [_event(cur, row) for row in await cur.fetchall()]


async def tail(conn: aiosqlite.Connection, flt: EventFilter, count: int) -> list[dict[str, Any]]:
    """The last `count` events matching `flt`, oldest first."""
    where, params = flt.where()
    sql = f"SELECT * FROM ({_EVENT_SELECT}{where} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
    async with conn.execute(sql, (*params, count)) as cur:
        return [_event(cur, row) for row in await cur.fetchall()]


async def export_events(
    path: str | os.PathLike[str], flt: EventFilter, page: int = 1000, through_seq: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every event matching `flt` (up to row `through_seq`), oldest first, read in pages (for export)."""
    async with read_only(path) as conn:
        after = 0
        while True:
            events = await fetch_events(conn, flt, after_seq=after, limit=page)
            for event in events:
                if through_seq is not None and event["seq"] > through_seq:
                    return
                yield event
            if len(events) < page:
                return
            after = events[-1]["seq"]


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must occur (each quoted, so no syntax leaks through)."""
    words = [w for w in text.split() if w]
    if not words:
        raise LedgerError("search text is empty")
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


async def search(
    path: str | os.PathLike[str], text: str, flt: EventFilter = EventFilter(), limit: int = 50
) -> list[dict[str, Any]]:
    """Jobs whose description, plan or notes for humans contain every word of `text`, best match first."""
    if flt.kind is not None or flt.job_id is not None:
        raise LedgerError("search filters by agent, tenant, decision and time only")
    where, params = flt.where(time_column="submitted_at")
    where = where.replace(" WHERE ", " AND ", 1)
    sql = (
        "SELECT j.job_id, j.agent_id, j.tenant_id, j.state, j.decision, j.submitted_at, j.description,"
        " snippet(job_search, -1, '[', ']', '...', 12) AS snippet"
        " FROM job_search JOIN jobs j ON j.job_id = job_search.job_id"
        f" WHERE job_search MATCH ?{where} ORDER BY rank LIMIT ?"
    )
    async with read_only(path) as conn, conn.execute(sql, (fts_query(text), *params, limit)) as cur:
        return [_row_dict(cur, row) for row in await cur.fetchall()]


async def list_anchors(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every anchor kept in the file, oldest first."""
    async with read_only(path) as conn, conn.execute("SELECT * FROM anchors ORDER BY anchor_id") as cur:
        return [_row_dict(cur, row) for row in await cur.fetchall()]
