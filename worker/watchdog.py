"""The watchdog every worker runs: it says the worker is alive, and gives abandoned jobs back.

A running job whose heartbeat is older than HEARTBEAT_TIMEOUT_S lost its worker (killed,
frozen, cut off). arq alone would wait for the job timeout plus 10 s; the watchdog returns it
to the queue at once, fenced so the old attempt can no longer record, and records the takeover.
A job that can never run again (its queue payload gone, see `fail_dropped`) ends `failed` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from governance.quota import reserved_day
from plangate_base import clock, codec
from plangate_base.logs import get_logger
from plangate_base.vocabulary import EventKind, FailureCode, JobState, Phase, RequeueReason
from worker import __version__, metrics
from worker.fair_queue import FairQueue
from worker.keys import Keys
from worker.ledger_events import WORKER_NAME, ledger_event
from worker.metrics import TENANT_GAUGES_EVERY_S, refresh_queue_gauges
from worker.outcome import Outcome
from worker.queue_backend import job_queue
from worker.settings import Settings
from worker.status_store import JobRef, StatusStore

log = get_logger(__name__)

_PRUNE_WORKERS_AFTER_S = 86_400
_PRUNE_INFO_EVERY_S = 60.0


class Watchdog:
    """Beats for this worker and takes over jobs whose heartbeat went stale."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        status: StatusStore,
        *,
        fair: FairQueue | None = None,
        accepting: Callable[[], bool] = lambda: True,
        version: str = __version__,
    ) -> None:
        """`fair` is the deployment's fair queue (one on `redis` by default); `version` is the plangate
        version the beat says this worker runs (what `plangate doctor` compares across the fleet)."""
        self._settings = settings
        self._accepting = accepting
        self._redis = redis
        self._keys = Keys(settings.key_prefix)
        self._queue = job_queue(settings.queue_name)
        self._status = status
        self._fair = fair or FairQueue(redis, self._keys, self._queue, aging_s=settings.priority_aging_s)
        self._stop = asyncio.Event()
        self.taken_over = 0
        self._next_pickup_check = 0.0
        self._next_info_prune = 0.0
        self._info = codec.dumps(
            {
                "version": version,
                "concurrency": settings.concurrency,
                "queue": settings.queue_name,
                "beat_s": settings.watchdog_interval_s,  # how often it beats: doctor tells a late beat
            }
        )
        self._next_tenant_gauges = 0.0

    def stop(self) -> None:
        """End `run` after the current sweep."""
        self._stop.set()

    async def run(self) -> None:
        """Beat and sweep every interval until stopped, then say this worker takes no more jobs; Redis
        errors are logged and retried."""
        interval = self._settings.watchdog_interval_s
        while not self._stop.is_set():
            try:
                await self.beat()
                await self.sweep()
                if self._settings.metrics_port:
                    tenants = time.monotonic() >= self._next_tenant_gauges
                    if tenants:
                        self._next_tenant_gauges = time.monotonic() + TENANT_GAUGES_EVERY_S
                    await refresh_queue_gauges(self._redis, self._settings, tenants=tenants)
            except RedisError as exc:
                log.warning("watchdog.redis_unreachable", error=str(exc))
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            except TimeoutError:
                pass
        # Stopped: health stops counting this worker now, not when its last beat ages out.
        with contextlib.suppress(RedisError):
            await self._redis.zrem(self._keys.workers_accepting(), WORKER_NAME)

    async def beat(self) -> None:
        """Say this worker is alive, and whether it takes jobs (what `plangate health` counts).

        Its info (version, slots, beat interval) and the pruning of workers gone a day go with the first
        beat and then every _PRUNE_INFO_EVERY_S, not every beat: an idle worker's load on Redis is its
        beats."""
        now_ms = clock.now_ms()
        housekeeping = time.monotonic() >= self._next_info_prune
        pruned = now_ms - _PRUNE_WORKERS_AFTER_S * 1000
        accepting = self._settings.concurrency > 0 and self._accepting()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._keys.workers(), {WORKER_NAME: now_ms})
            if accepting:
                pipe.zadd(self._keys.workers_accepting(), {WORKER_NAME: now_ms})
            else:  # draining: health stops counting it now, not when its last beat ages out
                pipe.zrem(self._keys.workers_accepting(), WORKER_NAME)
            if housekeeping:
                pipe.zremrangebyscore(self._keys.workers(), "-inf", pruned)
                pipe.zremrangebyscore(self._keys.workers_accepting(), "-inf", pruned)
                pipe.hset(self._keys.workers_info(), WORKER_NAME, self._info)
            await pipe.execute()
        if housekeeping:  # the info of workers gone a day
            self._next_info_prune = time.monotonic() + _PRUNE_INFO_EVERY_S
            live = set(await self._redis.zrange(self._keys.workers(), 0, -1))
            gone = [name for name in await self._redis.hkeys(self._keys.workers_info()) if name not in live]
            if gone:
                await self._redis.hdel(self._keys.workers_info(), *gone)

    async def sweep(self) -> int:
        """Return every abandoned job to the queue; returns how many were taken over."""
        taken = 0
        for job_id, cutoff_ms in await self._status.stale(self._settings.stale_after_s):
            fields = await self._status.fields(
                job_id, "attempt", "agent_id", "tenant_id", "worker", "heartbeat_at", "request"
            )
            if fields["attempt"] is None:
                await self._redis.zrem(self._keys.running(), job_id)  # its status expired
                continue
            attempt = int(fields["attempt"])
            event = ledger_event(
                EventKind.TAKEN_OVER,
                job_id=job_id,
                agent_id=fields["agent_id"] or "?",
                tenant_id=fields["tenant_id"],
                attempt=attempt,
                worker=WORKER_NAME,
                reason=RequeueReason.HEARTBEAT_TIMEOUT,
                payload={"abandoned_by": fields["worker"], "last_heartbeat_at": fields["heartbeat_at"]},
            )
            outcome = await self._status.requeue(job_id, attempt, event, stale_before_ms=cutoff_ms)
            bound = log.bind(job_id=job_id, agent_id=fields["agent_id"], attempt=attempt)
            if outcome == 1:
                taken += 1
                bound.warning("job.taken_over", abandoned_by=fields["worker"])
            elif outcome == -1:
                await self._fail_lost(job_id, attempt, fields)
                bound.error("job.payload_lost")
        self.taken_over += taken
        await self.expire_past_deadline()
        if time.monotonic() >= self._next_pickup_check:  # a backlog makes this costly: not every beat
            self._next_pickup_check = time.monotonic() + self._settings.stale_after_s
            await self._release_lost_picks()
            freed = await self._status.release_lost_pickups(
                self._settings.stale_after_s, self._queue.claim_ttl_s(self._settings.job_timeout_s)
            )
            if freed:
                log.warning("pickups.released", jobs=freed)
        return taken

    async def _release_lost_picks(self) -> None:
        """Give back jobs picked but never started (their worker died between the pick and START)."""
        lost = await self._fair.lost_picks(self._settings.stale_after_s)
        if lost:
            claim_ttl_s = self._queue.claim_ttl_s(self._settings.job_timeout_s)
            stale_s = self._settings.stale_after_s
            back = await self._fair.give_back(lost, claim_ttl_s=claim_ttl_s, stale_s=stale_s)
            if back:
                log.warning("picks.released", jobs=back)

    async def expire_past_deadline(self) -> int:
        """End `failed` (deadline_exceeded) every queued job whose deadline passed: one terminal record
        whoever races for it (a worker starting it checks the deadline too), nothing reserved, no LLM call.
        Returns how many this sweep ended."""
        ended = 0
        for job_id in await self._fair.past_deadline(clock.now_ms()):
            fields = await self._status.fields(job_id, "state", "attempt", "agent_id", "tenant_id", "request")
            if fields["state"] != JobState.QUEUED.value:
                await self._fair.forget_deadline(job_id)  # started, ended or expired
                continue
            message = "its deadline passed while it was queued"
            if await self._fail(job_id, None, fields, FailureCode.DEADLINE_EXCEEDED, message):
                ended += 1
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._queue.add_dequeue(pipe, job_id)  # a worker would only skip it
                    await pipe.execute()
                log.info("job.deadline_exceeded", job_id=job_id, tenant_id=fields["tenant_id"])
        return ended

    async def _fail_lost(self, job_id: str, attempt: int, fields: dict[str, str | None]) -> None:
        message = "its worker died and the job's payload is gone"
        await self._fail(job_id, attempt, fields, FailureCode.ABANDONED, message)

    async def fail_dropped(self, job_id: str, code: FailureCode, message: str) -> bool:
        """End a queued job `failed` (`code`) that arq drops without running it (its payload is gone
        or unusable): else its status would say `queued` forever. False when it is not queued."""
        names = ("state", "attempt", "agent_id", "tenant_id", "request")
        fields = await self._status.fields(job_id, *names)
        if fields["state"] != JobState.QUEUED.value:
            return False  # unknown (a hand-made entry), ended already (cancelled), or running elsewhere
        recorded = await self._fail(job_id, None, fields, code, message)
        if recorded:
            bound = log.bind(job_id=job_id, agent_id=fields["agent_id"], tenant_id=fields["tenant_id"])
            bound.error("job.unstartable", reason=code, detail=message)
        return recorded

    async def _fail(
        self,
        job_id: str,
        attempt: int | None,
        fields: dict[str, str | None],
        code: FailureCode,
        message: str,
    ) -> bool:
        """The one terminal write of a job no attempt can finish: status, event, ledger entry, and its
        quota and locks settled (`attempt=None`: only while it is still queued)."""
        outcome = Outcome.error(JobState.FAILED, code, message)
        agent_id = fields["agent_id"] or "?"
        # The job's own tenant, quota day and locks, so that what it holds is settled on the right account.
        failed = ledger_event(
            outcome.kind,
            job_id=job_id,
            agent_id=agent_id,
            tenant_id=fields["tenant_id"],
            attempt=attempt if attempt is not None else int(fields.get("attempt") or 0),
            worker=WORKER_NAME,
            **outcome.event_fields(),
        )
        ref = JobRef(
            job_id,
            agent_id,
            locks=_locks_of(fields.get("request")),
            tenant_id=fields["tenant_id"] or "default",
            quota_day=await reserved_day(self._redis, self._keys, job_id),
        )
        recorded = await self._status.record(
            ref,
            attempt,
            outcome.state,
            failed,
            outcome.status_fields(),
            phase=None if attempt is None else Phase.RECORD,
        )
        if recorded:
            metrics.JOBS_FINISHED.labels(JobState.FAILED.value, "").inc()
            metrics.FAILURES.labels(code.value).inc()
        return recorded


def _locks_of(request_json: str | None) -> tuple[str, ...]:
    """The locks a job's request names (kept in its status hash), so the terminal write releases them."""
    try:
        request = codec.loads(request_json or "{}")
    except ValueError:
        return ()
    locks = request.get("locks") if isinstance(request, dict) else None
    return tuple(lock for lock in locks if isinstance(lock, str)) if isinstance(locks, list) else ()
