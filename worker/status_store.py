"""The job's status hash and event stream in Redis: the only code that writes them.

Every write that must respect the job's lifecycle is a Lua script that declares all the
keys it touches (Dragonfly requires that): a stale attempt (fencing token) or a job that is
already terminal is never overwritten, and the terminal write, its event and its ledger
entry land together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.asyncio import Redis

from governance.quota import reserved_day, settle_keys
from plangate_base import clock, codec
from plangate_base.clock import now_iso, utc_day
from plangate_base.vocabulary import JobState, Phase, StreamKind
from worker import lifecycle_lua as lua
from worker.errors import JobNotFound
from worker.job_models import JobStatus
from worker.keys import JOB_EVENTS_MAXLEN, Keys
from worker.queue_backend import JobQueue, job_queue
from worker.settings import STATS_TTL_S, USAGE_TTL_S


class Beat(IntEnum):
    """What a heartbeat learned: carry on, or stop (fenced out, cancel asked, agent revoked)."""

    FENCED = 0
    OK = 1
    CANCEL = 2
    REVOKED = 3


@dataclass(frozen=True, slots=True)
class JobRef:
    """What the lifecycle scripts need to know about a job besides its id."""

    job_id: str
    agent_id: str
    locks: tuple[str, ...] = ()
    tenant_id: str = "default"
    quota_day: str = ""  # the UTC day its quota reservation counts against (today when none)


@dataclass(frozen=True, slots=True)
class Spend:
    """What a job really spent on the LLM, settled against its reservation at RECORD."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """A failure to count against the agent's error budget, and the ledger event if it runs out."""

    window_ms: int
    limit: int
    suspension_event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a job at the start of an attempt."""

    attempt: int | None  # None: nothing to run (terminal already, running elsewhere, or unknown)
    state: str
    tries: int = 0  # tries counted so far, this one included (hand-backs and takeovers do not count)


class StatusStore:
    """Owns the status hashes and event streams of jobs."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        ttl_s: int,
        worker_name: str = "",
        queue: JobQueue | None = None,
        stats_ttl_s: int = STATS_TTL_S,
        usage_ttl_s: int = USAGE_TTL_S,
    ) -> None:
        """`queue` is the deployment's job queue (by default the one named `<prefix>queue`)."""
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._stats_ttl_s = stats_ttl_s
        self._usage_ttl_s = usage_ttl_s
        self._worker = worker_name
        self._queue = queue or job_queue(keys.queue())
        self._start = redis.register_script(lua.START)
        self._heartbeat = redis.register_script(lua.HEARTBEAT)
        self._record = redis.register_script(lua.RECORD)
        self._request_cancel = redis.register_script(lua.REQUEST_CANCEL)
        self._requeue = redis.register_script(lua.REQUEUE)
        self._release_lost = redis.register_script(lua.RELEASE_LOST_PICKUPS)

    @staticmethod
    def queued_fields(
        agent_id: str, tenant_id: str, submitted_at: str, request_json: str = "{}"
    ) -> dict[str, Any]:
        """The status hash of a freshly submitted job (written inside the submit transaction).

        The request is kept so that `plangate failed retry` can submit it again.
        """
        return {
            "state": JobState.QUEUED.value,
            "phase": "",
            "attempt": 0,
            "tries": 0,
            "request": request_json,
            "agent_id": agent_id,
            "tenant_id": tenant_id,
            "submitted_at": submitted_at,
            "progress": "{}",
        }

    async def read(self, job_id: str) -> JobStatus:
        """The job's status object; JobNotFound when no such job is known."""
        raw = await self._redis.hgetall(self._keys.job(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return JobStatus.from_hash(job_id, raw)

    async def start(self, job_id: str, agent_id: str | None = None, *, stale_after_s: float) -> Claim:
        """Claim the job for a new attempt: state running, phase PREFLIGHT, attempt + 1, tries + 1.

        A job still `running` is claimed only when its heartbeat is older than `stale_after_s`
        (its worker is gone); with a fresh heartbeat it runs elsewhere and is left alone.
        """
        k = self._keys
        keys = [k.job(job_id), k.job_events(job_id), k.running(), k.fair_picked(), k.fair_deadlines()]
        if agent_id:
            keys.append(self._keys.agent_state(agent_id))
        now_ms = clock.now_ms()
        args = [
            now_iso(),
            self._worker,
            JOB_EVENTS_MAXLEN,
            job_id,
            now_ms,
            now_ms - int(stale_after_s * 1000),
        ]
        reply = await self._start(keys=keys, args=args)
        if int(reply[0]) == 1:
            return Claim(attempt=int(reply[1]), state=JobState.RUNNING.value, tries=int(reply[2]))
        return Claim(attempt=None, state=str(reply[1]) or "unknown")

    async def heartbeat(
        self,
        job: JobRef,
        attempt: int,
        phase: Phase,
        *,
        tokens: int = 0,
        kind: StreamKind = StreamKind.PHASE,
        lock_ttl_ms: int = 0,
    ) -> Beat:
        """Record a phase change or progress, renew the job's locks and update the agent's
        tracker; tells the caller whether to carry on."""
        k = self._keys
        keys = [k.job(job.job_id), k.job_events(job.job_id), k.agent_state(job.agent_id), k.running()]
        keys += [k.lock(r) for r in job.locks]
        progress = codec.dumps({"tokens": tokens})
        args = [
            attempt, kind.value, phase.value, now_iso(), tokens, progress, JOB_EVENTS_MAXLEN,
            job.job_id, lock_ttl_ms, clock.now_ms(),
        ]  # fmt: skip
        return Beat(int(await self._heartbeat(keys=keys, args=args)))

    async def record(
        self,
        job: JobRef,
        attempt: int | None,
        state: JobState,
        ledger_event: dict[str, Any],
        fields: dict[str, Any],
        *,
        phase: Phase | None = Phase.RECORD,
        charge: BudgetCharge | None = None,
        needs_review: bool = False,
        spend: Spend = Spend(),
    ) -> bool:
        """Write the terminal state, its event and ledger entry, release the job's locks, count a
        failure against the agent's budget (suspending it when spent) and queue an escalation for
        review: all at once.

        `attempt=None` records only while the job is still queued (a cancel before any worker
        took it). Returns False when the job is terminal already or another attempt holds it.
        """
        k = self._keys
        keys = [
            k.job(job.job_id),
            k.job_events(job.job_id),
            k.ledger_stream(),
            k.agent_state(job.agent_id),
            k.agent_errors(job.agent_id),
            k.review_pending(job.tenant_id),
            k.locks(),
            k.running(),
            k.failed(),
            *settle_keys(k, job.job_id, job.tenant_id, job.quota_day, utc_day()),
            k.stats_minute(clock.utc_minute()),
            k.fair_jobs(),
            k.fair_ready(job.tenant_id),
            k.fair_parked(),
            k.fair_delayed(),
            k.fair_deadlines(),
            k.fair_picked(),
            k.webhook_outbox(),
            k.webhook_subscriptions(),
            *(k.lock(r) for r in job.locks),
        ]
        args: dict[str, Any] = {
            "state": state.value,
            "phase": phase.value if phase else "",
            "now": ledger_event["created_at"],
            "ttl_s": self._ttl_s,
            "maxlen": JOB_EVENTS_MAXLEN,
            "event": codec.dumps(ledger_event),
            "job_id": job.job_id,
            "agent_id": job.agent_id,
            "now_ms": clock.now_ms(),
            "fields": {name: v if isinstance(v, str) else codec.dumps(v) for name, v in fields.items()},
            "spend": {
                "prompt": spend.prompt_tokens,
                "completion": spend.completion_tokens,
                "estimated": spend.estimated,
            },
            "review": needs_review,
            "stats_ttl_s": self._stats_ttl_s,
            "usage_ttl_s": self._usage_ttl_s,
        }
        if attempt is not None:  # (absent: record only while the job is still queued)
            args["attempt"] = attempt
        if charge is not None:
            args["charge"] = {
                "window_ms": charge.window_ms,
                "limit": charge.limit,
                "event": codec.dumps(charge.suspension_event),
            }
        return bool(await self._record(keys=keys, args=[codec.dumps(args)]))

    async def requeue(
        self,
        job_id: str,
        attempt: int,
        ledger_event: dict[str, Any],
        *,
        stale_before_ms: int | None = None,
    ) -> int:
        """Return a running attempt's job to the queue without burning its try (see lifecycle_lua).

        With `stale_before_ms` only when its last heartbeat is older (the watchdog's takeover).
        Returns 1 requeued, 0 not ours to requeue, -1 the queue's payload of the job is gone.
        """
        keys = [
            self._keys.job(job_id),
            self._keys.job_events(job_id),
            self._keys.running(),
            self._keys.ledger_stream(),
            self._queue.claim_key(job_id),
            self._queue.queue_key,
            self._queue.job_key(job_id),
        ]
        owner = await self.fields(job_id, "agent_id", "tenant_id")
        day = await reserved_day(self._redis, self._keys, job_id)
        tenant_id = owner["tenant_id"] or "default"
        k = self._keys
        keys += settle_keys(k, job_id, tenant_id, day, utc_day())
        keys += [k.fair_tenants(), k.fair_ready(tenant_id), k.paused(), k.fair_tenant(tenant_id)]
        keys += [k.fair_clock(), k.fair_jobs()]
        cutoff = "" if stale_before_ms is None else stale_before_ms
        args = [
            attempt, now_iso(), JOB_EVENTS_MAXLEN, codec.dumps(ledger_event), job_id, clock.now_ms(), cutoff,
            owner["agent_id"] or "?", self._usage_ttl_s, tenant_id,
        ]  # fmt: skip
        return int(await self._requeue(keys=keys, args=args))

    async def release_lost_pickups(self, older_than_s: float, mark_ttl_s: float, limit: int = 20) -> int:
        """Clear the queue's claim (arq's in-progress mark) of queued jobs whose picking worker died before
        START; `mark_ttl_s` is the claim's full TTL (JobQueue.claim_ttl_s)."""
        cutoff = clock.now_ms() - int(older_than_s * 1000)
        ids = await self._queue.due(self._redis, cutoff, limit)
        if not ids:
            return 0
        keys = [key for job_id in ids for key in (self._keys.job(job_id), self._queue.claim_key(job_id))]
        args = [int(mark_ttl_s * 1000), int(older_than_s * 1000)]
        return int(await self._release_lost(keys=keys, args=args))

    async def stale(self, older_than_s: float, limit: int = 100) -> list[tuple[str, int]]:
        """Running jobs whose last heartbeat is older than `older_than_s`, with their cutoff in ms."""
        cutoff = clock.now_ms() - int(older_than_s * 1000)
        ids = await self._redis.zrangebyscore(self._keys.running(), "-inf", cutoff, start=0, num=limit)
        return [(job_id, cutoff) for job_id in ids]

    async def fields(self, job_id: str, *names: str) -> dict[str, str | None]:
        """Some raw fields of the status hash."""
        values = await self._redis.hmget(self._keys.job(job_id), list(names))
        return dict(zip(names, values, strict=True))

    async def request_cancel(self, job_id: str) -> str | None:
        """Flag a running job for cancellation; returns the job's state (None when unknown)."""
        return await self._request_cancel(keys=[self._keys.job(job_id)])
