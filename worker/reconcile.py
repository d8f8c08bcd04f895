"""Reconciling the ledger with Redis: a job the ledger saw submitted and never saw end, past the result
retention, whose status hash is gone from Redis was lost with Redis's data. It is recorded as `lost` (one
event per job, by its event id), so a Redis that lost its data is never silent."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from ledger.reconcile import lost_event_id, unended_jobs
from plangate_base import codec
from plangate_base.logs import get_logger
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, EventKind
from worker.keys import Keys
from worker.ledger_events import WORKER_NAME, ledger_event
from worker.settings import Settings

log = get_logger(__name__)


async def find_lost(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """The unended jobs past the retention whose status no longer exists in Redis."""
    candidates = await asyncio.to_thread(unended_jobs, settings.ledger_path, settings.result_ttl_s)
    if not candidates:
        return []
    keys = Keys(settings.key_prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for job in candidates:
            pipe.exists(keys.job(job["job_id"]))
        present = await pipe.execute()
    return [job for job, exists in zip(candidates, present, strict=True) if not exists]


def lost_entry(job: dict[str, Any], retention_s: float) -> dict[str, str]:
    """The ledger stream entry that records a job as lost."""
    event = ledger_event(
        EventKind.LOST,
        job_id=job["job_id"],
        agent_id=job.get("agent_id"),
        tenant_id=job.get("tenant_id"),
        worker=WORKER_NAME,
        reason="status_gone",
        payload={"submitted_at": job.get("created_at"), "result_ttl_s": retention_s},
    )
    event["event_id"] = lost_event_id(job["job_id"])
    return {LEDGER_STREAM_FIELD: codec.dumps(event)}


async def record_lost(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Find the lost jobs and put a `lost` event for each on the ledger stream; returns them."""
    lost = await find_lost(redis, settings)
    if lost:
        stream = Keys(settings.key_prefix).ledger_stream()
        async with redis.pipeline(transaction=False) as pipe:
            for job in lost:
                pipe.xadd(stream, lost_entry(job, settings.result_ttl_s))
            await pipe.execute()
        log.warning("ledger.jobs_lost", jobs=len(lost), first=lost[0]["job_id"])
    return lost
