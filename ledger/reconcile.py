"""Reconciliation with Redis: jobs the ledger saw submitted and never saw end, older than the result
retention. Whether each one's status is still in Redis is the caller's question (the queue side owns the
keys); the ones whose status is gone were lost with Redis's data and are recorded as `lost`."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from ledger.verify import open_read_only
from plangate_base import clock
from plangate_base.vocabulary import TERMINAL_EVENT_KINDS, EventKind

_ENDED = tuple(sorted({*(k.value for k in TERMINAL_EVENT_KINDS), EventKind.LOST.value}))

_UNENDED = f"""
SELECT s.job_id, s.agent_id, s.tenant_id, s.created_at FROM events s
WHERE s.kind = '{EventKind.SUBMITTED.value}' AND s.job_id IS NOT NULL AND s.created_at < ?
  AND NOT EXISTS (
    SELECT 1 FROM events e WHERE e.job_id = s.job_id AND e.kind IN ({", ".join("?" for _ in _ENDED)})
  )
ORDER BY s.seq LIMIT ?
"""


def lost_event_id(job_id: str) -> str:
    """The event id of a job's `lost` record: one per job, however often reconciliation runs."""
    return f"{EventKind.LOST.value}:{job_id}"


def unended_jobs(
    path: str | os.PathLike[str], retention_s: float, limit: int = 10_000
) -> list[dict[str, Any]]:
    """Jobs submitted more than `retention_s` ago with no terminal (nor `lost`) row, oldest first."""
    cutoff = clock.iso(clock.utcnow() - timedelta(seconds=retention_s))
    conn = open_read_only(path)
    try:
        rows = conn.execute(_UNENDED, (cutoff, *_ENDED, limit)).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]
