"""What one caller may do with jobs and reviews: the operations behind both the REST routes
(worker/api/app.py) and the MCP tools (worker/mcp_server/), so the two doors apply one set of scope
and tenant rules. Identity and tenancy come from the caller's Principal; a job it may not see is a
JobNotFound, exactly like one that does not exist."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from governance.api_tokens import Principal, Scope
from plangate_base import codec
from plangate_base.vocabulary import JobState
from worker.api.auth import require
from worker.api.models import JobList
from worker.api.problems import ApiProblem
from worker.client import PlanClient, to_request
from worker.errors import WaitTimeout
from worker.job_models import JobEvent, JobStatus
from worker.review import ReviewDesk


class JobService:
    """The job and review operations of one authenticated caller. `token` travels with its jobs as
    their credential for the worker's own check (it is never logged or stored)."""

    def __init__(self, base: PlanClient, principal: Principal, token: str | None) -> None:
        self.principal = principal
        self._token = token
        scoped = principal.scope in (Scope.AGENT, Scope.TENANT, Scope.REVIEWER)
        self.client = base.scoped(
            tenant_id=principal.tenant_id if scoped else None,
            agent_id=principal.agent_id if principal.scope is Scope.AGENT else None,
            agent_key=token,
        )

    async def submit(self, body: dict[str, Any], header_key: str | None = None) -> JobStatus:
        """Queue a job for the token's agent (a tenant token names the agent). The same idempotency key
        with the same body answers the same job; with another body, 409 `idempotency_conflict`."""
        principal = self.principal
        require(principal, Scope.AGENT, Scope.TENANT)
        problem = principal.submit_problem(body.get("agent_id"), body.get("tenant_id"))
        if problem:
            raise ApiProblem(403, "forbidden", problem)
        data = {k: v for k, v in body.items() if v is not None}
        if principal.agent_id:
            data.setdefault("agent_id", principal.agent_id)
        if principal.tenant_id:
            data.setdefault("tenant_id", principal.tenant_id)
        if header_key is not None:
            if data.get("idempotency_key", header_key) != header_key:
                raise ApiProblem(400, "bad_request", "Idempotency-Key and the body's idempotency_key differ")
            data["idempotency_key"] = header_key
        req = to_request(data)
        fingerprint = hashlib.sha256(codec.dumps(req.model_dump(mode="json")).encode()).hexdigest()
        status, created = await self.client.submit_for_status(req, fingerprint=fingerprint)
        if not created and await self.client.request_digest(status.job_id) not in (fingerprint, None):
            raise ApiProblem(
                409,
                "idempotency_conflict",
                f"idempotency key {req.idempotency_key!r} was used for a different request "
                f"(job {status.job_id})",
            )
        return status

    async def jobs(
        self,
        *,
        states: frozenset[JobState] = frozenset(),
        agent_id: str | None = None,
        tenant_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList:
        """Newest first. Agent tokens see their agent's jobs, tenant and reviewer tokens their tenant's;
        admin and auditor tokens name the tenant."""
        principal = self.principal
        tenant = principal.tenant_id or tenant_id
        if tenant is None:
            raise ApiProblem(
                400, "bad_request", f"a {principal.scope.value} token lists one tenant: ?tenant_id="
            )
        if principal.tenant_id and tenant_id not in (None, principal.tenant_id):
            raise ApiProblem(403, "forbidden", f"this token lists tenant {principal.tenant_id!r} only")
        jobs, next_cursor = await self.client.jobs(
            tenant,
            states=states,
            agent_id=agent_id,
            since_ms=_ms(since),
            until_ms=_ms(until),
            limit=limit,
            cursor=cursor,
        )
        return JobList(jobs=jobs, next_cursor=next_cursor)

    async def status(self, job_id: str) -> JobStatus:
        """The job's status object."""
        return await self.client.status(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> JobStatus:
        """The status once the job is terminal, or after `timeout_s` seconds the current one."""
        if timeout_s <= 0:
            return await self.client.status(job_id)
        try:
            return await self.client.wait(job_id, timeout=timeout_s)
        except WaitTimeout:
            return await self.client.status(job_id)

    def watch_entries(self, job_id: str, after: str = "0") -> AsyncIterator[tuple[str, JobEvent]]:
        """The job's events (with their stream ids) from after `after`, until the terminal one."""
        return self.client.watch_entries(job_id, after)

    def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's events as they happen, until the terminal one."""
        return self.client.watch(job_id)

    async def cancel(self, job_id: str) -> JobStatus:
        """At once when queued; a running job stops at its next heartbeat. 409 when it has ended."""
        status = await self.client.status(job_id)
        if not self.principal.may_act_on(status.tenant_id, status.agent_id):
            raise ApiProblem(403, "forbidden", f"a {self.principal.scope.value} token cannot cancel jobs")
        return await self.client.cancel(job_id)

    async def pending_reviews(self) -> list[JobStatus]:
        """The reviewer's tenant's escalated jobs, oldest first (reviewer tokens only)."""
        return await (await self._desk()).pending()

    async def decide_review(self, job_id: str, *, approve: bool, note: str = "") -> JobStatus:
        """Approve or reject an escalated plan; the decision and its note go to the ledger."""
        return await (await self._desk()).decide(job_id, approve=approve, note=note)

    async def _desk(self) -> ReviewDesk:
        principal = self.principal
        if principal.scope is not Scope.REVIEWER or principal.reviewer_id is None:
            raise ApiProblem(403, "forbidden", "reviews need a reviewer's token (its key)")
        return await self.client.review_desk(principal.reviewer_id, self._token)


def _ms(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)
