"""PREFLIGHT: is the request well formed, may this agent plan it for this tenant, does the
tenant's quota admit it, and are its locks free. Every answer but yes is a refusal code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from governance.agent_keys import check_agent_key
from governance.api_tokens import TENANT_TOKEN_PREFIX, Principal
from governance.fair_share import deadline_ms
from governance.live_state import AgentStateStore, LockStore
from governance.models import AgentRecord, AgentState, PlanRequest, TenantRecord
from governance.policy import Refuse, check_links, preflight
from governance.quota import QuotaStore, reservation_for
from governance.registry import AgentRegistry, TenantRegistry
from plangate_base import codec
from plangate_base.clock import now_ms, utc_day
from plangate_base.vocabulary import NOW_MS, EventKind, RefusalCode
from worker.admin import agent_keys, api_tokens
from worker.errors import JobNotFound, describe_validation_error
from worker.job_models import JobStatus
from worker.job_run import Expired, JobContext, Refused
from worker.keys import Keys
from worker.prompt import build_messages
from worker.queue_backend import MALFORMED_FIELD
from worker.settings import Settings
from worker.status_store import StatusStore

_LOCK_POLL_S = 0.1
_DEFAULT_WINDOW_S: int = AgentRecord.model_fields["error_budget_window_s"].default
_MAX_WINDOWS = 10_000  # agents whose window is remembered (forgotten all at once past it)

Emit = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Admitted:
    """What PREFLIGHT let through: the request (its linked context filled in), the agent and tenant it is
    planned for, and the planning call's messages (built once, here, to size the reservation)."""

    request: PlanRequest
    agent: AgentRecord
    tenant: TenantRecord
    messages: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Reads:
    """What `PreflightPhase._read_governance` read."""

    agent: AgentRecord | None
    stored_key: str | None
    presented: str | None
    token: Principal | None
    state: AgentState
    tenant: TenantRecord | None


class PreflightPhase:
    """The checks of PREFLIGHT, in order; raises Refused with the first failing one."""

    def __init__(
        self, settings: Settings, redis: Redis, registry: AgentRegistry, status: StatusStore, emit: Emit
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.registry = registry
        self.status = status
        self.agent_states = AgentStateStore(redis, self.keys)
        self.agent_keys = agent_keys(redis, self.keys)
        self.api_tokens = api_tokens(redis, self.keys)
        self.tenants = TenantRegistry(redis, self.keys)
        self.quotas = QuotaStore(redis, self.keys, day_ttl_s=settings.quota_day_ttl_s)
        self.lock_store = LockStore(redis, self.keys)
        self.lock_ttl_ms = lock_ttl_ms(settings)
        self._emit = emit  # a ledger event outside the terminal write (a lock wait)
        self._windows: dict[str, int] = {}  # agent id -> the error-budget window its record had last

    async def check(self, job: JobContext, raw_request: Any) -> Admitted:
        """PREFLIGHT: the request is well formed, governance allows it, and its locks are ours."""
        if not isinstance(raw_request, dict):
            raise Refused(
                Refuse(RefusalCode.BAD_REQUEST, "malformed job payload: the request is not an object")
            )
        if MALFORMED_FIELD in raw_request:
            why = raw_request[MALFORMED_FIELD]
            raise Refused(Refuse(RefusalCode.BAD_REQUEST, f"malformed job payload: {why}"))
        try:
            request = PlanRequest.model_validate(raw_request)
        except ValidationError as exc:
            raise Refused(Refuse(RefusalCode.BAD_REQUEST, describe_validation_error(exc))) from exc
        due = deadline_ms(request.deadline)
        if due is not None and due <= now_ms():
            raise Expired(f"its deadline {request.deadline} passed before it started")
        reads = await self._read_governance(request)
        agent = reads.agent
        if agent is not None:
            refusal = check_agent_key(agent, reads.stored_key, reads.presented, reads.token)
            if refusal is not None:
                raise Refused(refusal)
        state = reads.state if agent else AgentState()
        tenant = reads.tenant
        allowed = self.settings.model_allowed(request.model)
        verdict = preflight(agent, state, request, tenant=tenant, model_allowed=allowed)
        if isinstance(verdict, Refuse):
            raise Refused(verdict)
        assert agent is not None and tenant is not None  # preflight refuses unknown ones
        request = await self._check_links(request)
        messages = await self._admit(job, agent, tenant, request)
        await self._take_locks(job, request)
        return Admitted(request, agent, tenant, messages)

    async def _read_governance(self, request: PlanRequest) -> _Reads:
        """What governance decides on, read in one round trip: the agent's record, its stored key hash, the
        presented API token's principal (when the key is one), its live state and the tenant's record.

        The failures are counted over the error-budget window this agent had at its last job (the
        record's default for its first); when the record read here names another window, they are
        counted again over that one (a second round trip, once per change)."""
        agent_id = request.agent_id
        presented = request.agent_key.get_secret_value() if request.agent_key else None
        # a key that is the API's tenant/admin token names a principal to look up
        is_token = bool(presented and presented.startswith(TENANT_TOKEN_PREFIX))
        window_s = self._windows.get(agent_id, _DEFAULT_WINDOW_S)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.registry.read_on(pipe, agent_id)
            self.agent_keys.read_on(pipe, agent_id)
            self.agent_states.read_on(pipe, agent_id, window_s)
            self.tenants.read_on(pipe, request.tenant_id)
            if is_token:
                assert presented is not None
                self.api_tokens.read_on(pipe, presented)
            replies = await pipe.execute()
        raw_agent, stored_key, raw_state, errors, raw_tenant = replies[:5]
        agent = self.registry.from_raw(agent_id, raw_agent)
        if agent is not None and agent.error_budget_window_s != window_s:
            if len(self._windows) >= _MAX_WINDOWS:
                self._windows.clear()
            self._windows[agent_id] = agent.error_budget_window_s
            async with self.redis.pipeline(transaction=False) as pipe:
                self.agent_states.count_errors_on(pipe, agent_id, agent.error_budget_window_s)
                (errors,) = await pipe.execute()
        return _Reads(
            agent=agent,
            stored_key=stored_key,
            presented=presented,
            token=self.api_tokens.from_raw(replies[5]) if is_token else None,
            state=self.agent_states.from_raw(raw_state, int(errors)),
            tenant=self.tenants.from_raw(request.tenant_id, raw_tenant),
        )

    async def _check_links(self, request: PlanRequest) -> PlanRequest:
        """The jobs a request names must be its tenant's (and a handoff a plan not rejected); the
        handed-off plan in the context is the earlier job's own, whatever the producer put there."""
        handoff = await self._read(request.handoff_from)
        retry = await self._read(request.retry_of)
        refusal = check_links(
            request, handoff.linked() if handoff else None, retry.linked() if retry else None
        )
        if refusal is not None:
            raise Refused(refusal)
        if handoff is None:
            return request
        context = {**(request.context or {}), "handoff": handoff.handoff()}
        return request.model_copy(update={"context": context})

    async def _read(self, job_id: str | None) -> JobStatus | None:
        if job_id is None:
            return None
        try:
            return await self.status.read(job_id)
        except JobNotFound:
            return None

    async def _admit(
        self, job: JobContext, agent: AgentRecord, tenant: TenantRecord, request: PlanRequest
    ) -> list[dict[str, Any]]:
        """Count the job against its tenant's quotas and reserve its worst-case spend; the planning
        call's messages, which size the reservation."""
        model = request.model or self.settings.model
        messages = build_messages(agent, request)  # (the planner sends these; built once)
        prompt_chars = sum(len(m["content"]) for m in messages)
        price = self.settings.price_for(model)
        reservation = reservation_for(
            tenant, prompt_chars=prompt_chars, max_tokens=self.settings.max_tokens, price=price, model=model
        )
        if isinstance(reservation, Refuse):
            raise Refused(reservation)
        day = utc_day()
        stale_ms = int((self.settings.job_timeout_s + self.settings.stale_after_s) * 1000)
        reserved = {
            "reserved_tokens": reservation.tokens,
            "reserved_cost_usd": reservation.cost_usd,
            "admitted_at_ms": NOW_MS,  # the admission's time on the server's clock
        }
        refusal = await self.quotas.admit(
            tenant,
            job.job_id,
            reservation,
            price=price,
            day=day,
            stale_ms=stale_ms,
            admitted_event=codec.dumps(job.event(EventKind.ADMITTED, payload=reserved)),
        )
        if refusal is not None:
            raise Refused(refusal)
        job.held.quota_day, job.held.prompt_estimate = day, reservation.prompt_estimate
        return messages

    async def _take_locks(self, job: JobContext, request: PlanRequest) -> None:
        """Hold every lock the request names, waiting up to wait_lock_s; `locked` otherwise."""
        if not request.locks:
            return
        deadline = time.monotonic() + request.wait_lock_s
        waited = False
        while True:
            held = await self.lock_store.acquire(request.locks, job.job_id, self.lock_ttl_ms)
            if held is None:
                job.held.locks = tuple(request.locks)
                return
            if time.monotonic() >= deadline:
                holder = await self.lock_store.holder(held)
                raise Refused(Refuse(RefusalCode.LOCKED, f"resource {held!r} is locked by job {holder}"))
            if not waited:
                waited = True
                await self._emit(
                    EventKind.LOCK_WAIT, job, reason=RefusalCode.LOCKED.value, payload={"resource": held}
                )
            await asyncio.sleep(_LOCK_POLL_S)


def lock_ttl_ms(settings: Settings) -> int:
    """How long a job's locks live without a heartbeat renewing them."""
    return int(settings.heartbeat_s * 5 * 1000)
