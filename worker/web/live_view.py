"""What the live view shows: job lists, one job in detail, the stats, read from Redis and the ledger
file. Served by the API app under /web (worker/api/web.py), to signed-in tokens, each seeing only the
jobs its token may see; the page polls the JSON every second and builds its DOM with textContent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from governance.registry import TenantRegistry
from ledger.errors import LedgerError
from ledger.queries import EventFilter, read_only, show_job, tail
from plangate_base import clock
from plangate_base.clock import utcnow
from plangate_base.logs import get_logger
from plangate_base.vocabulary import JobState
from worker.cli.stats import collect_stats
from worker.client import PlanClient
from worker.errors import JobNotFound
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.queue_backend import job_queue
from worker.settings import Settings

log = get_logger(__name__)

Sees = Callable[[str, str], bool]  # (tenant_id, agent_id) -> may the viewer see that job

LIST_LIMIT = 50  # queued and running rows shown
RECENT_LIMIT = 25  # finished rows shown
_LEDGER_TAIL = 200  # ledger events scanned for recent job ids
_REMEMBERED = 500  # job ids this process saw queued or running, kept to list them once finished
_CANDIDATES = 150  # job ids read per poll when looking for recently finished ones
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}


def _age_s(at: str | None, now: datetime) -> float | None:
    if not at:
        return None
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(max(0.0, (now - then).total_seconds()), 1)


def job_row(status: JobStatus, now: datetime) -> dict[str, Any]:
    """One job as a row of the list: state, phase, heartbeat age, tokens and outcome."""
    reason = status.refusal.code if status.refusal else status.error.type if status.error else None
    return {
        "job_id": status.job_id,
        "state": status.state.value,
        "phase": status.phase.value if status.phase else None,
        "attempt": status.attempt,
        "agent_id": status.agent_id,
        "tenant_id": status.tenant_id,
        "submitted_at": status.submitted_at,
        "started_at": status.started_at,
        "finished_at": status.finished_at,
        "heartbeat_at": status.heartbeat_at,
        "heartbeat_age_s": None if status.terminal else _age_s(status.heartbeat_at, now),
        "tokens": int(status.progress.get("tokens", 0) or 0),
        "decision": status.output.decision.value if status.output else None,
        "reason": reason,
    }


class LiveView:
    """Reads what the page shows: job lists, one job in detail, the stats. Read-only."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._client = PlanClient(redis, settings)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _remember(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._seen[job_id] = None
            self._seen.move_to_end(job_id)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)

    async def _statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Status objects of the jobs still known, from one pipeline of HGETALLs."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self._keys.job(job_id))
            raws = await pipe.execute()
        found = {}
        for job_id, raw in zip(job_ids, raws, strict=True):
            if not raw:
                continue  # expired, or removed between the two reads
            try:
                found[job_id] = JobStatus.from_hash(job_id, raw)
            except ValidationError as exc:
                log.warning("status.unreadable", job_id=job_id, error=str(exc))
        return found

    async def _ledger_job_ids(self) -> list[str]:
        """Job ids of the ledger's last events, newest first (none when there is no ledger file here)."""
        if not await asyncio.to_thread(Path(self._settings.ledger_path).is_file):
            return []
        try:
            async with read_only(self._settings.ledger_path) as conn:
                events = await tail(conn, EventFilter(), _LEDGER_TAIL)
        except (LedgerError, sqlite3.Error) as exc:
            log.warning("ledger.unreadable", error=str(exc))
            return []
        return [e["job_id"] for e in reversed(events) if e.get("job_id")]

    async def _waiting(self, running_count: int) -> list[str]:
        """Jobs waiting for a worker, oldest first: due in the queue and not running.

        The queue holds a job until it finishes and a deferred retry due in the future, so
        read the due entries only, enough of them to fill the list after the running ones are
        left out (each running job is a due entry).
        """
        now_ms = clock.now_ms()
        due = await job_queue(self._settings.queue_name).due(self._redis, now_ms, LIST_LIMIT + running_count)
        if not due:
            return []
        running = await self._redis.zmscore(self._keys.running(), due)
        return [job_id for job_id, beat in zip(due, running, strict=True) if beat is None][:LIST_LIMIT]

    async def jobs(self, sees: Sees = lambda tenant_id, agent_id: True) -> dict[str, Any]:
        """Queued (waiting for a worker, oldest first), running (oldest heartbeat first) and recently
        finished jobs, of those `sees(tenant_id, agent_id)` lets the viewer see."""
        tenants = [t.tenant_id for t in await TenantRegistry(self._redis, self._keys).list()]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys.running())
            pipe.zrange(self._keys.running(), 0, LIST_LIMIT - 1)
            pipe.zrevrange(self._keys.failed(), 0, RECENT_LIMIT - 1)
            for tenant_id in tenants:
                pipe.zrevrange(self._keys.review_pending(tenant_id), 0, RECENT_LIMIT - 1)
            running_count, running, failed, *reviews = await pipe.execute()
        review = [job_id for pending in reviews for job_id in pending]
        queued = await self._waiting(running_count)
        self._remember([*queued, *running])
        remembered = list(reversed(self._seen))[:_CANDIDATES]
        found = [*failed, *review, *remembered, *await self._ledger_job_ids()]
        candidates = list(dict.fromkeys(found))[:_CANDIDATES]
        wanted = list(dict.fromkeys([*queued, *running, *candidates]))
        statuses = {
            job_id: status
            for job_id, status in (await self._statuses(wanted)).items()
            if sees(status.tenant_id, status.agent_id)
        }
        now = utcnow()
        finished = [statuses[j] for j in candidates if j in statuses and statuses[j].terminal]
        finished.sort(key=lambda s: s.finished_at or "", reverse=True)
        return {
            "at": clock.iso(now),
            "queue": self._settings.queue_name,
            JobState.QUEUED.value: [
                job_row(statuses[j], now)
                for j in queued
                if j in statuses and statuses[j].state is JobState.QUEUED
            ],
            JobState.RUNNING.value: [job_row(statuses[j], now) for j in running if j in statuses],
            "recent": [job_row(s, now) for s in finished[:RECENT_LIMIT]],
        }

    async def job(self, job_id: str, sees: Sees = lambda tenant_id, agent_id: True) -> dict[str, Any]:
        """One job: its status object, its event stream and its ledger record (when the file is here);
        JobNotFound for a job the viewer may not see, as for one that does not exist."""
        status = await self._client.status(job_id)
        if not sees(status.tenant_id, status.agent_id):
            raise JobNotFound(job_id)
        entries = await self._redis.xrange(self._keys.job_events(job_id), "-", "+")
        ledger: dict[str, Any] | None = None
        ledger_note = None
        try:
            ledger = await show_job(self._settings.ledger_path, job_id)
        except (LedgerError, sqlite3.Error) as exc:
            ledger_note = str(exc)
        return {
            "status": status.model_dump(mode="json"),
            "row": job_row(status, utcnow()),
            "events": [{"id": entry_id, **fields} for entry_id, fields in entries],
            "ledger": ledger,
            "ledger_note": ledger_note,
        }

    async def stats(self, minutes: int) -> dict[str, Any]:
        """`plangate stats --json`, as is."""
        return await collect_stats(self._redis, self._settings, minutes)
