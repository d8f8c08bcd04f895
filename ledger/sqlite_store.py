"""The one owner of the SQLite ledger file: opens it (WAL, fsync on commit), appends events, projects jobs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiosqlite

from ledger import queries
from ledger.events import EVENT_COLUMNS, SUBMITTED, TERMINAL_KINDS, dumps
from ledger.schema import apply_schema

# Two writer processes on one file queue up on the lock for this long instead of failing at once.
BUSY_TIMEOUT_MS = 10_000

_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)

# Upserts, so the projection comes out the same whichever of submitted/terminal is recorded first.
_PROJECT_SUBMITTED = """
INSERT INTO jobs (job_id, agent_id, tenant_id, task_type, description, state, submitted_at)
VALUES (?, ?, ?, ?, ?, 'queued', ?)
ON CONFLICT (job_id) DO UPDATE SET
    agent_id = coalesce(jobs.agent_id, excluded.agent_id),
    tenant_id = coalesce(jobs.tenant_id, excluded.tenant_id),
    task_type = excluded.task_type,
    description = excluded.description,
    submitted_at = excluded.submitted_at
"""

_PROJECT_TERMINAL = """
INSERT INTO jobs (job_id, agent_id, tenant_id, state, decision, reason, model, finished_at, output)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO UPDATE SET
    agent_id = coalesce(jobs.agent_id, excluded.agent_id),
    tenant_id = coalesce(jobs.tenant_id, excluded.tenant_id),
    state = excluded.state,
    decision = excluded.decision,
    reason = excluded.reason,
    model = excluded.model,
    finished_at = excluded.finished_at,
    output = excluded.output
"""


class LedgerStore:
    """The SQLite ledger file behind one aiosqlite connection; get one with `await LedgerStore.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection carries one transaction at a time; concurrent callers take turns.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> LedgerStore:
        """Open (creating if needed) the ledger at `path`: WAL mode, synchronous=FULL, schema applied."""
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT), not the sqlite3 module's.
        conn = await aiosqlite.connect(file, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await apply_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, file)

    async def insert_events(self, events: list[dict[str, Any]]) -> int:
        """Append a batch in one transaction, skipping known event_ids; returns how many were new."""
        if not events:
            return 0
        inserted = 0
        async with self._lock:
            # IMMEDIATE takes the write lock up front, so a second writer waits (busy_timeout) at BEGIN
            # instead of failing when it upgrades a read transaction.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    cur = await self._conn.execute(_INSERT_EVENT, _event_row(event))
                    if cur.rowcount == 1:
                        inserted += 1
                        await self._project(event)
                    await cur.close()
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")
        return inserted

    async def _project(self, event: dict[str, Any]) -> None:
        """Update the jobs row for a newly recorded event (only submitted and terminal kinds change it)."""
        kind = event["kind"]
        if not event.get("job_id"):
            return  # agent events (revocations, budget resets) belong to no job
        payload = event.get("payload")
        fields = payload if isinstance(payload, dict) else {}
        if kind == SUBMITTED:
            params: tuple[Any, ...] = (
                event["job_id"],
                event.get("agent_id"),
                event.get("tenant_id"),
                _text(fields.get("task_type")),
                _text(fields.get("description")),
                event.get("created_at"),
            )
            await self._conn.execute(_PROJECT_SUBMITTED, params)
        elif kind in TERMINAL_KINDS:
            params = (
                event["job_id"],
                event.get("agent_id"),
                event.get("tenant_id"),
                kind,
                event.get("decision"),
                event.get("reason") or _text(fields.get("code")),
                event.get("model"),
                event.get("created_at"),
                dumps(payload) if payload is not None else None,
            )
            await self._conn.execute(_PROJECT_TERMINAL, params)

    async def events_for_job(self, job_id: str) -> list[dict[str, Any]]:
        """All events of one job, ordered by seq, payload parsed."""
        async with self._lock:
            return await queries.fetch_job_events(self._conn, job_id)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The job's projection row, or None."""
        async with self._lock:
            return await queries.fetch_job(self._conn, job_id)

    async def count_events(self, kind: str | None = None) -> int:
        """How many events are recorded (of `kind`, if given)."""
        async with self._lock:
            return await queries.count_events(self._conn, kind)

    async def pragma(self, name: str) -> Any:
        """The current value of a read-only PRAGMA such as journal_mode or synchronous (for checks)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        async with self._lock, self._conn.execute(f"PRAGMA {name}") as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def close(self) -> None:
        """Close the connection (committed data is already durable)."""
        async with self._lock:
            await self._conn.close()


def _event_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """The INSERT parameters of one event, payload as JSON text."""
    payload = event.get("payload")
    return tuple(
        dumps(payload if payload is not None else {}) if col == "payload" else event.get(col)
        for col in EVENT_COLUMNS
    )


def _text(value: Any) -> str | None:
    """A projection column value: text as is, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return dumps(value)
