"""The producer API any agent imports: submit a planning job, then poll, wait, watch or cancel it."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from redis.asyncio import Redis

from governance.models import AgentRecord, PlanRequest
from governance.policy import check_links
from governance.registry import AgentRegistry, ReviewerRegistry
from plangate_base import codec
from plangate_base.clock import from_ms, iso, now_iso, now_ms, utcnow
from plangate_base.logs import get_logger
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, CancelReason, EventKind, JobState, StreamKind
from worker import fair_lua
from worker.atomic_writes import AtomicWrites, compose, register
from worker.errors import (
    BadRequest,
    JobNotFound,
    NotCancellable,
    Unauthenticated,
    WaitTimeout,
    describe_validation_error,
)
from worker.fair_queue import FairQueue
from worker.ids import new_id
from worker.job_models import CALLBACK_URL_FIELD, JobEvent, JobStatus
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.outcome import Outcome
from worker.queue_backend import JOB_FUNCTION, job_queue
from worker.redis_conn import UNREACHABLE, text_client, unreachable
from worker.review import ReviewDesk, authenticate_reviewer
from worker.settings import Settings
from worker.status_store import JobRef, StatusStore
from worker.webhooks.store import WebhookStore

if TYPE_CHECKING:
    from worker.http_client import HttpPlanClient

log = get_logger(__name__)

_WATCH_BLOCK_MS = 1000


def usage_row(tenant_id: str, day: str, raw: dict[str, str]) -> dict[str, Any]:
    """One day of a tenant's usage hash as plain numbers, with its agents broken out."""
    totals: dict[str, Any] = {"tenant_id": tenant_id, "day": day, "agents": {}}
    for field, value in raw.items():
        number = float(value) if "cost" in field else int(value)
        if field.startswith("agent:"):
            _, agent_id, name = field.split(":", 2)
            totals["agents"].setdefault(agent_id, {})[name] = number
        else:
            totals[field] = number
    return totals


def to_request(request: PlanRequest | dict[str, Any]) -> PlanRequest:
    """Validate a request at the edge; BadRequest with every problem in one line."""
    if isinstance(request, PlanRequest):
        return request
    try:
        return PlanRequest.model_validate(request)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from exc


_LIST_MAX_CHUNKS = 20  # a listing reads at most this many chunks of the tenant's index per page
SYNTHETIC_TERMINAL_ID = "terminal"  # the stream id of a terminal event made up from an expired job's status
REQUEST_DIGEST_FIELD = "request_digest"  # status-hash field: the API's digest of the submitted body
# The submit's one script: its recorded writes, with the fair queue's placement as one of their steps.
FAIR_ENQUEUE_STEP = "fair_enqueue"
SUBMIT_WRITES = compose(fair_lua.FAIR_FUNCTIONS, {FAIR_ENQUEUE_STEP: fair_lua.ENQUEUE_BODY})


class PlanClient:
    """Submits planning jobs and reads their status. Safe to share within one event loop.

    A client made for a tenant (and an agent) sees only that tenant's (and agent's) jobs: any
    other job id raises JobNotFound, exactly like one that does not exist, so ids cannot be
    probed. Its agent key, when given, travels with each job to the worker that checks it.
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        agent_key: str | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._queue = job_queue(settings.queue_name)
        self._status = StatusStore(
            redis,
            self._keys,
            ttl_s=settings.result_ttl_s,
            queue=self._queue,
            stats_ttl_s=settings.stats_ttl_s,
            usage_ttl_s=settings.usage_ttl_s,
        )
        self._apply_writes = register(redis, SUBMIT_WRITES)
        self._fair = FairQueue(
            redis,
            self._keys,
            self._queue,
            aging_s=settings.priority_aging_s,
            stats_ttl_s=settings.stats_ttl_s,
        )
        self._tenant_id = tenant_id
        self._agent_id = agent_id
        self._agent_key = agent_key

    @classmethod
    def connect(
        cls,
        settings: Settings | None = None,
        *,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        agent_key: str | None = None,
    ) -> PlanClient:
        """A client on its own connection pool to `settings.redis_url`; its jobs carry `agent_key`, or
        else `settings.agent_key` (PLANGATE_AGENT_KEY)."""
        settings = settings or Settings()
        if agent_key is None and settings.agent_key is not None:
            agent_key = settings.agent_key.get_secret_value()
        redis = text_client(settings.redis_url)
        return cls(redis, settings, tenant_id=tenant_id, agent_id=agent_id, agent_key=agent_key)

    def scoped(
        self, *, tenant_id: str | None, agent_id: str | None = None, agent_key: str | None = None
    ) -> PlanClient:
        """This client for one tenant (and agent, with its key), sharing the connection pool: what the
        HTTP API makes for each request's caller."""
        clone = copy.copy(self)
        clone._tenant_id, clone._agent_id, clone._agent_key = tenant_id, agent_id, agent_key
        return clone

    @staticmethod
    def http(base_url: str, token: str | None, *, timeout_s: float = 30.0) -> HttpPlanClient:
        """A client of the HTTP API (`plangate serve`) instead of Redis, for agents outside the
        cluster: the same submit, status, wait, watch and cancel; the token is the identity."""
        from worker.http_client import HttpPlanClient

        return HttpPlanClient(base_url, token, timeout_s=timeout_s)

    @property
    def redis(self) -> Redis:
        """The connection pool this client uses (shared by the operator tools built on it)."""
        return self._redis

    @property
    def settings(self) -> Settings:
        """The settings this client was made with."""
        return self._settings

    async def agent(self, agent_id: str) -> AgentRecord | None:
        """An agent's record (the built-in seed agent included); None when unknown."""
        return await AgentRegistry(self._redis, self._keys).get(agent_id)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def __aenter__(self) -> PlanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def submit(self, request: PlanRequest | dict[str, Any], *, fingerprint: str | None = None) -> str:
        """Validate and enqueue a planning job; returns its id. One idempotency key, one job.
        `fingerprint` (the HTTP API's digest of the body) is kept with the job (REQUEST_DIGEST_FIELD) so a
        later submit with the same key can tell whether it sent the same request."""
        return (await self.submit_for_status(request, fingerprint=fingerprint))[0].job_id

    async def submit_for_status(
        self, request: PlanRequest | dict[str, Any], *, fingerprint: str | None = None
    ) -> tuple[JobStatus, bool]:
        """Submit, and answer the job's status with whether this call created it (False: the
        idempotency key named an earlier job, whose status is read). A new job's status is the one
        its submit wrote, without reading it back."""
        req = to_request(self._scoped(request))
        key = req.agent_key.get_secret_value() if req.agent_key else self._agent_key
        if not self._settings.model_allowed(req.model):
            raise BadRequest(
                f"model {req.model!r} is not allowed (default {self._settings.model!r}; "
                f"allow-list: {', '.join(self._settings.allowed_models) or 'empty'})"
            )
        try:
            req = await self._check_links(req)
            if req.callback_url:
                await WebhookStore(self._redis, self._keys).check_callback(req.tenant_id, req.callback_url)
            job_id, fields = await self._enqueue(req, key, fingerprint)
            if fields is None:
                return await self.status(job_id), False
            return JobStatus.from_hash(job_id, fields), True
        except UNREACHABLE as exc:
            raise unreachable(self._settings.redis_url, exc) from exc

    def _scoped(self, request: PlanRequest | dict[str, Any]) -> PlanRequest | dict[str, Any]:
        """Fill in this client's tenant and agent; refuse a request for another one."""
        if self._tenant_id is None and self._agent_id is None:
            return request
        if isinstance(request, PlanRequest) and (self._tenant_id or request.tenant_id) == request.tenant_id:
            if (self._agent_id or request.agent_id) == request.agent_id:
                return request  # already this client's (validated once, not dumped and validated again)
        data = dict(request) if isinstance(request, dict) else request.model_dump(exclude_none=True)
        if isinstance(request, PlanRequest) and request.agent_key:
            data["agent_key"] = request.agent_key.get_secret_value()
        for name, mine in (("tenant_id", self._tenant_id), ("agent_id", self._agent_id)):
            if mine is None:
                continue
            if data.setdefault(name, mine) != mine:
                raise BadRequest(f"this client submits for {name.removesuffix('_id')} {mine!r} only")
        return data

    def _visible(self, status: JobStatus) -> JobStatus:
        if (self._tenant_id and status.tenant_id != self._tenant_id) or (
            self._agent_id and status.agent_id != self._agent_id
        ):
            raise JobNotFound(status.job_id)  # the same answer as for a job that does not exist
        return status

    async def _check_links(self, req: PlanRequest) -> PlanRequest:
        """The jobs a request names must be its tenant's (and a handoff a plan not rejected in review);
        a handoff carries the earlier job's plan into this request's context (read-only material)."""
        handoff = await self._linked(req.handoff_from)
        retry = await self._linked(req.retry_of)
        refusal = check_links(req, handoff.linked() if handoff else None, retry.linked() if retry else None)
        if refusal is not None:
            raise BadRequest(refusal.reason)
        if handoff is None:
            return req
        context = {**(req.context or {}), "handoff": handoff.handoff()}
        return to_request({**req.model_dump(mode="json", exclude_none=True), "context": context})

    async def _linked(self, job_id: str | None) -> JobStatus | None:
        if job_id is None:
            return None
        try:
            return self._visible(await self._status.read(job_id))
        except JobNotFound:
            return None

    async def _enqueue(
        self, req: PlanRequest, agent_key: str | None, fingerprint: str | None = None
    ) -> tuple[str, dict[str, str] | None]:
        """One atomic write: idempotency key, status hash (queued), ledger event, the queue's job and
        entry. Answers the job id with the status fields written, or None for them when the
        idempotency key already named a job (then nothing is written). The agent key goes only into
        the queue's payload the worker reads, never the status or ledger."""
        from worker import tracing  # OpenTelemetry, when installed, is for submitters only

        payload = req.model_dump(mode="json", exclude_none=True)
        for_worker = {**payload, "agent_key": agent_key} if agent_key else payload
        span = None
        if tracing.enabled(self._settings.tracing):
            span = tracing.start_span("submit", "producer", attributes={"plangate.agent_id": req.agent_id})
            for_worker = {**for_worker, tracing.TRACE_FIELD: tracing.inject(span)}
        try:
            return await self._enqueue_once(req, payload, for_worker, fingerprint)
        finally:
            tracing.end_span(span)

    async def _enqueue_once(
        self, req: PlanRequest, payload: dict[str, Any], for_worker: dict[str, Any], fingerprint: str | None
    ) -> tuple[str, dict[str, str] | None]:
        idem_key = self._keys.idempotency(req.tenant_id, req.idempotency_key) if req.idempotency_key else None
        job_id = new_id()
        enqueue_ms = now_ms()
        ttl = self._settings.result_ttl_s
        event = ledger_event(
            EventKind.SUBMITTED,
            job_id=job_id,
            agent_id=req.agent_id,
            tenant_id=req.tenant_id,
            payload=payload,
        )
        writes = AtomicWrites()
        if idem_key:
            writes.set(idem_key, job_id, ex=ttl)
        status_key = self._keys.job(job_id)
        fields = self._status.queued_fields(req.agent_id, req.tenant_id, now_iso(), codec.dumps(payload))
        if fingerprint:
            fields[REQUEST_DIGEST_FIELD] = fingerprint
        if req.callback_url:
            fields[CALLBACK_URL_FIELD] = req.callback_url
        placed, fair_keys, fair_args = self._fair.enqueue_step(job_id, req, enqueue_ms=enqueue_ms)
        writes.step(FAIR_ENQUEUE_STEP, fair_keys, fair_args)
        if placed.start_ms > enqueue_ms:
            fields["not_before"] = iso(from_ms(placed.start_ms))
        if req.priority is not None:
            fields["priority"] = req.priority.value
        writes.hset(status_key, fields)
        writes.expire(status_key, ttl)
        self._queue.add_enqueue(
            writes, job_id, for_worker, enqueue_ms=enqueue_ms, ttl_s=ttl, due_ms=placed.start_ms
        )
        tenant_jobs = self._keys.tenant_jobs(req.tenant_id)
        writes.zadd(tenant_jobs, {job_id: enqueue_ms})
        writes.zremrangebyscore(tenant_jobs, "-inf", f"({enqueue_ms - ttl * 1000}")  # expired ones
        writes.expire(tenant_jobs, ttl)
        writes.xadd(self._keys.ledger_stream(), {LEDGER_STREAM_FIELD: codec.dumps(event)})
        writes.incr(self._keys.stats_submitted())
        writes.publish(self._keys.wake(), job_id)
        existing = await writes.apply(self._apply_writes, guard=idem_key)
        if existing is not None:
            return existing, None  # this idempotency key's job, submitted earlier
        log.info("job.submitted", job_id=job_id, agent_id=req.agent_id, tenant_id=req.tenant_id)
        return job_id, {name: str(value) for name, value in fields.items()}

    async def status(self, job_id: str) -> JobStatus:
        """The job's status object; JobNotFound when no such job is known."""
        try:
            return self._visible(await self._status.read(job_id))
        except UNREACHABLE as exc:
            raise unreachable(self._settings.redis_url, exc) from exc

    async def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Wait until the job is terminal and return its status; WaitTimeout after `timeout` seconds
        (0: only look; a finished job's status is returned whatever the timeout)."""
        if timeout is not None and timeout < 0:
            raise BadRequest(f"timeout must be 0 or more seconds, not {timeout:g}")
        status = await self.status(job_id)
        if status.terminal:
            return status
        if timeout == 0:
            raise WaitTimeout(job_id, 0.0)
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.watch(job_id):
                    pass
        except TimeoutError:
            raise WaitTimeout(job_id, timeout or 0.0) from None
        return await self.status(job_id)

    async def watch(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Phase and progress events of the job as they happen; ends after the terminal event."""
        async for _, event in self.watch_entries(job_id):
            yield event

    async def watch_entries(self, job_id: str, after: str = "0") -> AsyncIterator[tuple[str, JobEvent]]:
        """The job's events with their stream ids, from after the entry `after` ("0": from the first);
        ends after the terminal event. A terminal event made up from the status (the stream expired
        with its job) has the id SYNTHETIC_TERMINAL_ID."""
        status = await self.status(job_id)
        stream = self._keys.job_events(job_id)
        last_id = after
        while True:
            try:
                reply = await self._redis.xread({stream: last_id}, block=_WATCH_BLOCK_MS, count=100)
            except UNREACHABLE as exc:
                raise unreachable(self._settings.redis_url, exc) from exc
            if not reply:
                # Nothing new: the stream may have expired with a terminal job.
                status = await self.status(job_id)
                if status.terminal:
                    yield (
                        SYNTHETIC_TERMINAL_ID,
                        JobEvent(
                            kind=StreamKind.TERMINAL,
                            state=status.state,
                            phase=status.phase,
                            attempt=status.attempt,
                            at=status.finished_at or now_iso(),
                        ),
                    )
                    return
                continue
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                event = JobEvent.from_fields(fields)
                yield entry_id, event
                if event.kind is StreamKind.TERMINAL:
                    return

    async def cancel(self, job_id: str, *, reason: CancelReason = CancelReason.BY_SUBMITTER) -> JobStatus:
        """Cancel a job: at once when still queued; a running job stops at its next heartbeat (its
        status shows `cancel_requested` until then). NotCancellable when it has ended already.
        `reason` says who asked when it was queued (an operator's bulk cancel, or the submitter)."""
        status = await self.status(job_id)
        if status.terminal:
            raise NotCancellable(f"job {job_id} already ended {status.state.value}: nothing to cancel")
        if status.state is JobState.QUEUED:
            outcome = Outcome.error(JobState.CANCELLED, reason, "cancelled while queued")
            event = ledger_event(
                outcome.kind,
                job_id=job_id,
                agent_id=status.agent_id,
                tenant_id=status.tenant_id,
                **outcome.event_fields(),
            )
            ref = JobRef(job_id, status.agent_id, tenant_id=status.tenant_id)
            fields = outcome.status_fields()
            if await self._status.record(ref, None, outcome.state, event, fields, phase=None):
                # The queued job would only be skipped by the worker; removing it saves the work.
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._queue.add_dequeue(pipe, job_id)
                    await pipe.execute()
                return await self.status(job_id)
        await self._status.request_cancel(job_id)  # running (or it started as we recorded)
        return await self.status(job_id)

    async def jobs(
        self,
        tenant_id: str,
        *,
        states: frozenset[JobState] = frozenset(),
        agent_id: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[JobStatus], str | None]:
        """A tenant's jobs, newest first, filtered by state, agent and submit time (ms since the epoch,
        inclusive); at most `limit`, and the cursor of the next page (None at the end). Jobs whose
        records expired are skipped."""
        if self._tenant_id and tenant_id != self._tenant_id:
            raise BadRequest(f"this client reads tenant {self._tenant_id!r} only")
        agent_id = self._agent_id or agent_id
        high: str = "+inf" if until_ms is None else str(until_ms)
        after: str | None = None
        if cursor:
            try:
                score, after = cursor.split(".", 1)
                high = str(int(score))
            except ValueError:
                raise BadRequest(f"{cursor!r} is not a cursor this API gave") from None
        low = "-inf" if since_ms is None else str(since_ms)
        key = self._keys.tenant_jobs(tenant_id)
        found: list[JobStatus] = []
        chunk = max(limit * 2, 50)
        offset = 0
        for _ in range(_LIST_MAX_CHUNKS):
            entries = await self._redis.zrevrangebyscore(
                key, high, low, start=offset, num=chunk, withscores=True
            )
            if not entries:
                return found, None
            offset += len(entries)
            if after is not None:  # the page ended inside this millisecond: skip up to its last job
                ids = [job_id for job_id, _ in entries]
                if after in ids:
                    entries = entries[ids.index(after) + 1 :]
                after = None
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id, _ in entries:
                    pipe.hgetall(self._keys.job(job_id))
                raws = await pipe.execute()
            for (job_id, score), raw in zip(entries, raws, strict=True):
                if not raw:
                    continue
                status = JobStatus.from_hash(job_id, raw)
                if (states and status.state not in states) or (agent_id and status.agent_id != agent_id):
                    continue
                found.append(status)
                if len(found) == limit:
                    return found, f"{int(score)}.{job_id}"
        return found, (f"{int(entries[-1][1])}.{entries[-1][0]}" if entries else None)

    async def failed(self, limit: int = 100) -> list[JobStatus]:
        """The dead-letter view: jobs that ended `failed`, newest first (expired ones are dropped)."""
        found: list[JobStatus] = []
        for job_id in await self._redis.zrevrange(self._keys.failed(), 0, limit - 1):
            try:
                status = await self._status.read(job_id)
            except JobNotFound:
                await self._redis.zrem(self._keys.failed(), job_id)
                continue
            try:
                found.append(self._visible(status))
            except JobNotFound:
                continue  # another tenant's
        return found

    async def retry(self, job_id: str) -> str:
        """Submit a failed job's request again as a new job (linked by `retry_of`); returns its id."""
        status = await self.status(job_id)
        if status.state is not JobState.FAILED:
            raise BadRequest(f"job {job_id} ended {status.state.value}; only failed jobs are retried")
        raw = (await self._status.fields(job_id, "request"))["request"]
        request = codec.loads(raw) if raw else {}
        request.pop("idempotency_key", None)
        request["retry_of"] = job_id
        if self._agent_key:
            request["agent_key"] = self._agent_key
        new_id = await self.submit(request)
        await self._redis.zrem(self._keys.failed(), job_id)
        return new_id

    async def usage(self, tenant_id: str, since: date, until: date | None = None) -> list[dict[str, Any]]:
        """Token and cost totals of a tenant per UTC day (and per agent), oldest first."""
        if self._tenant_id and tenant_id != self._tenant_id:
            raise BadRequest(f"this client reads tenant {self._tenant_id!r} only")
        until = until or utcnow().date()
        if since > until:
            raise BadRequest(f"--since {since} is after {until}")
        days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._keys.usage(tenant_id, day.isoformat()))
            raws = await pipe.execute()
        return [
            usage_row(tenant_id, day.isoformat(), raw) for day, raw in zip(days, raws, strict=True) if raw
        ]

    async def queue_position(self, job_id: str) -> int | None:
        """How many entries are ahead of a queued job in the queue (running ones included); None when
        it is not in the queue."""
        return await self._queue.position(self._redis, job_id)

    async def request_digest(self, job_id: str) -> str | None:
        """The digest of the body the job was submitted with through the HTTP API (None otherwise)."""
        return (await self._status.fields(job_id, REQUEST_DIGEST_FIELD))[REQUEST_DIGEST_FIELD]

    async def healthy_workers(self, window_s: float) -> int:
        """How many workers of this queue that take jobs (not draining) beat within the last `window_s` s."""
        since_ms = now_ms() - int(window_s * 1000)
        return int(await self._redis.zcount(self._keys.workers_accepting(), since_ms, "+inf"))

    async def review_desk(self, reviewer_id: str, reviewer_key: str | None) -> ReviewDesk:
        """The desk of an authenticated reviewer: its tenant's escalated jobs and the approve/reject
        decision. Unauthenticated for a wrong key; a tenant-scoped client opens only its tenant's desk."""
        try:
            reviewer = await authenticate_reviewer(self._redis, self._keys, reviewer_id, reviewer_key)
        except UNREACHABLE as exc:
            raise unreachable(self._settings.redis_url, exc) from exc
        if self._tenant_id is not None and reviewer.tenant_id != self._tenant_id:
            raise Unauthenticated(f"reviewer {reviewer_id!r} does not review tenant {self._tenant_id!r}")
        return ReviewDesk(self._redis, self._keys, self._status, reviewer)

    async def authenticated_review_desk(self, reviewer_id: str) -> ReviewDesk:
        """The desk of a reviewer its caller authenticated already (the HTTP API: by the reviewer's
        token); Unauthenticated when no such reviewer is known or it reviews another tenant."""
        reviewer = await ReviewerRegistry(self._redis, self._keys).get(reviewer_id)
        if reviewer is None or (self._tenant_id is not None and reviewer.tenant_id != self._tenant_id):
            raise Unauthenticated(f"no reviewer {reviewer_id!r} for this tenant")
        return ReviewDesk(self._redis, self._keys, self._status, reviewer)


__all__ = ["JOB_FUNCTION", "PlanClient"]
