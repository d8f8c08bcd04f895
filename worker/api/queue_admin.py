"""The API's operator routes over the queue (admin scope): pause and resume a tenant, an agent or the whole
queue, and bulk cancel / retry by filter with a dry run (worker.fair_queue, worker.bulk_ops)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and `caller` is local.
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from governance.api_tokens import Scope
from plangate_base.vocabulary import JobState, PauseScope
from worker.api.auth import require
from worker.bulk_ops import BulkOps, JobFilter
from worker.fair_queue import FairQueue
from worker.keys import Keys
from worker.queue_backend import job_queue
from worker.settings import Settings


class PauseChange(BaseModel):
    """What to pause or resume, and why (recorded in the ledger with the token's id)."""

    model_config = ConfigDict(extra="forbid")

    scope: PauseScope
    target: str = Field(default="", max_length=128, description="the tenant or agent id (none for all)")
    reason: str = Field(default="", max_length=2000)


class PauseAnswer(BaseModel):
    """Whether the change took effect (False: it was paused already, or not paused)."""

    changed: bool
    paused: dict[str, dict[str, Any]]


class BulkRequest(BaseModel):
    """Which jobs a bulk operation touches; `dry_run` only counts them."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str | None = Field(default=None, max_length=128)
    agent_id: str | None = Field(default=None, max_length=128)
    older_than_s: float | None = Field(default=None, ge=0)
    states: list[JobState] = Field(default_factory=lambda: [JobState.QUEUED])
    dry_run: bool = False


class BulkAnswer(BaseModel):
    """What a bulk operation matched and changed (the new jobs of a retry in `created`)."""

    dry_run: bool
    matched: int
    changed: int
    job_ids: list[str]
    created: list[str]


def queue_router(settings: Settings, caller: Any, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """The routes; `caller` is the app's dependency that authenticates the request (its Principal),
    `responses` the problem answers they document."""
    keys = Keys(settings.key_prefix)
    router = APIRouter(prefix="/v1", tags=["admin"], responses=responses)

    def fair(request: Request) -> FairQueue:
        queue = job_queue(settings.queue_name)
        return FairQueue(request.app.state.redis, keys, queue, aging_s=settings.priority_aging_s)

    async def change(request: Request, body: PauseChange, principal: Any, *, pause: bool) -> PauseAnswer:
        require(principal, Scope.ADMIN)
        target = "" if body.scope is PauseScope.ALL else body.target
        by = f"api:{principal.token_id}"
        queue = fair(request)
        if pause:
            changed = await queue.pause(body.scope, target, by=by, reason=body.reason)
        else:
            changed = await queue.resume(body.scope, target, by=by, reason=body.reason)
        return PauseAnswer(changed=changed, paused=await queue.paused())

    @router.post("/queue/pause", response_model=PauseAnswer, summary="Pause a tenant, an agent or the queue")
    async def pause(request: Request, body: PauseChange, principal: caller) -> PauseAnswer:
        """Paused work stays queued; running jobs finish."""
        return await change(request, body, principal, pause=True)

    @router.post("/queue/resume", response_model=PauseAnswer, summary="Resume paused work")
    async def resume(request: Request, body: PauseChange, principal: caller) -> PauseAnswer:
        """Workers are woken at once: paused jobs start within a second."""
        return await change(request, body, principal, pause=False)

    @router.get("/queue/paused", response_model=dict[str, dict[str, Any]], summary="What is paused")
    async def paused(request: Request, principal: caller) -> dict[str, dict[str, Any]]:
        """Pause field (all, tenant:<id>, agent:<id>) -> who, when and why."""
        require(principal, Scope.ADMIN, Scope.AUDITOR)
        return await fair(request).paused()

    def bulk_ops(request: Request) -> BulkOps:
        client = request.app.state.client
        return BulkOps(client, client.redis, keys)

    @router.post("/jobs/bulk-cancel", response_model=BulkAnswer, summary="Cancel jobs by filter")
    async def bulk_cancel(request: Request, body: BulkRequest, principal: caller) -> BulkAnswer:
        """Queued jobs end `cancelled` at once, running ones at their next heartbeat; each in the ledger."""
        require(principal, Scope.ADMIN)
        flt = JobFilter(body.tenant_id, body.agent_id, body.older_than_s)
        result = await bulk_ops(request).cancel(flt, states=frozenset(body.states), dry_run=body.dry_run)
        return BulkAnswer.model_validate(result.as_dict())

    @router.post("/failed/bulk-retry", response_model=BulkAnswer, summary="Retry dead letters by filter")
    async def bulk_retry(request: Request, body: BulkRequest, principal: caller) -> BulkAnswer:
        """Each matching failed job is submitted again as a new job linked by `retry_of`."""
        require(principal, Scope.ADMIN)
        flt = JobFilter(body.tenant_id, body.agent_id, body.older_than_s)
        result = await bulk_ops(request).retry(flt, dry_run=body.dry_run)
        return BulkAnswer.model_validate(result.as_dict())

    return router
