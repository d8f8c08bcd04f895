"""Operators' bulk operations by filter (tenant, agent, state, age): cancel queued (or running) jobs, retry
dead letters. Each has a dry run that only counts; every job it touches gets its own ledger record (its
`cancelled` end, or the retry's `submitted` with `retry_of`).

They read the fair queue's job index (every queued job with its tenant, agent and submit time), the running
set and the dead-letter set: an operator's action, never on a worker's path. A cancel races safely with
workers picking the same jobs: the queued-only terminal write and START are both conditional, so each job
ends exactly once whichever wins (a job that started first is asked to stop at its next heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from plangate_base import clock
from plangate_base.vocabulary import CancelReason, JobState
from worker.client import PlanClient
from worker.errors import BadRequest, JobNotFound, NotCancellable
from worker.keys import Keys

CANCELLABLE = frozenset({JobState.QUEUED, JobState.RUNNING})
_SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a bulk operation touches; None matches any. `older_than_s`: submitted (dead letters:
    failed) at least this long ago."""

    tenant_id: str | None = None
    agent_id: str | None = None
    older_than_s: float | None = None

    def matches(self, tenant_id: str | None, agent_id: str | None, at_ms: int, now_ms: int) -> bool:
        """Whether a job of this tenant and agent, dated `at_ms`, is selected at `now_ms`."""
        if self.tenant_id is not None and tenant_id != self.tenant_id:
            return False
        if self.agent_id is not None and agent_id != self.agent_id:
            return False
        return self.older_than_s is None or now_ms - at_ms >= self.older_than_s * 1000


@dataclass(slots=True)
class BulkResult:
    """What a bulk operation matched and did (nothing on a dry run)."""

    dry_run: bool
    matched: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # retry: the new jobs

    def as_dict(self) -> dict[str, object]:
        """The JSON shape the CLI and the API print."""
        return {
            "dry_run": self.dry_run,
            "matched": len(self.matched),
            "changed": len(self.changed),
            "job_ids": self.matched,
            "created": self.created,
        }


class BulkOps:
    """Bulk cancel and retry through a PlanClient (so each job is cancelled or retried as one would be)."""

    def __init__(self, client: PlanClient, redis: Redis, keys: Keys) -> None:
        self._client = client
        self._redis = redis
        self._keys = keys

    async def queued(self, flt: JobFilter) -> list[str]:
        """Queued jobs matching `flt`, oldest first."""
        now = clock.now_ms()
        found: list[tuple[int, str]] = []
        async for job_id, meta in self._redis.hscan_iter(self._keys.fair_jobs(), count=_SCAN_COUNT):
            tenant_id, agent_id, _, submitted = meta.split(" ")
            if flt.matches(tenant_id, agent_id, int(submitted), now):
                found.append((int(submitted), job_id))
        return [job_id for _, job_id in sorted(found)]

    async def running(self, flt: JobFilter) -> list[str]:
        """Running jobs matching `flt` (their age counted from submit)."""
        now = clock.now_ms()
        ids = await self._redis.zrange(self._keys.running(), 0, -1)
        selected = []
        for job_id in ids:
            fields = await self._redis.hmget(
                self._keys.job(job_id), ["tenant_id", "agent_id", "submitted_at"]
            )
            if fields[2] is None:
                continue
            if flt.matches(fields[0], fields[1], clock.ms_of(fields[2]), now):
                selected.append(job_id)
        return selected

    async def dead_letters(self, flt: JobFilter) -> list[str]:
        """Failed jobs matching `flt` (their age counted from when they failed), oldest first."""
        now = clock.now_ms()
        selected = []
        for job_id, failed_ms in await self._redis.zrange(self._keys.failed(), 0, -1, withscores=True):
            fields = await self._redis.hmget(self._keys.job(job_id), ["tenant_id", "agent_id"])
            if flt.matches(fields[0], fields[1], int(failed_ms), now):
                selected.append(job_id)
        return selected

    async def cancel(
        self, flt: JobFilter, *, states: frozenset[JobState] = frozenset({JobState.QUEUED}), dry_run: bool
    ) -> BulkResult:
        """Cancel the matching jobs in `states` (queued at once; running at their next heartbeat)."""
        if not states or not states <= CANCELLABLE:
            raise BadRequest("a bulk cancel selects queued and/or running jobs")
        result = BulkResult(dry_run)
        if JobState.QUEUED in states:
            result.matched += await self.queued(flt)
        if JobState.RUNNING in states:
            result.matched += await self.running(flt)
        if dry_run:
            return result
        for job_id in result.matched:
            try:
                await self._client.cancel(job_id, reason=CancelReason.BY_OPERATOR)
            except (NotCancellable, JobNotFound):
                continue  # it ended meanwhile (its own record says how)
            result.changed.append(job_id)
        return result

    async def retry(self, flt: JobFilter, *, dry_run: bool) -> BulkResult:
        """Submit the matching dead letters again as new jobs (each linked by `retry_of`)."""
        result = BulkResult(dry_run, matched=await self.dead_letters(flt))
        if dry_run:
            return result
        for job_id in result.matched:
            try:
                result.created.append(await self._client.retry(job_id))
            except (BadRequest, JobNotFound):
                continue  # retried or expired meanwhile
            result.changed.append(job_id)
        return result
