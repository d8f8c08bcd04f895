"""What the MCP tools call: `Jobs`, one caller's job and review operations. In the API process and
for trusted local use it is the REST routes' own JobService (worker/api/service.py); `plangate mcp`
with an API URL and a token uses `HttpJobs`, the same operations over the HTTP API."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Protocol

from governance.api_tokens import Scope
from plangate_base.vocabulary import JobState
from worker.api.models import MAX_WAIT_S, JobList
from worker.http_client import HttpPlanClient
from worker.job_models import JobEvent, JobStatus


class Jobs(Protocol):
    """One caller's operations; errors are ApiProblem (in process) or typed PlangateErrors (over HTTP)."""

    async def submit(self, body: dict[str, Any]) -> JobStatus: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def wait(self, job_id: str, timeout_s: float) -> JobStatus: ...

    def events(self, job_id: str) -> AsyncIterator[JobEvent]: ...

    async def cancel(self, job_id: str) -> JobStatus: ...

    async def jobs(
        self,
        *,
        states: frozenset[JobState] = frozenset(),
        agent_id: str | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList: ...

    async def pending_reviews(self) -> list[JobStatus]: ...

    async def decide_review(self, job_id: str, *, approve: bool, note: str = "") -> JobStatus: ...


class HttpJobs:
    """`Jobs` over the HTTP API with one token (HttpPlanClient and its transport): the API applies the
    token's scopes and tenant, so this side knows nothing of them."""

    scope: Scope | None = None  # unknown here: every tool is listed, the API refuses what the token may not

    def __init__(self, client: HttpPlanClient) -> None:
        self._client = client

    async def _call(self, method: str, path: str, body: Any = None, *, timeout_s: float | None = None) -> Any:
        return await asyncio.to_thread(self._client.transport.call, method, path, body, timeout_s=timeout_s)

    async def submit(self, body: dict[str, Any]) -> JobStatus:
        """POST /v1/jobs: the queued job's status."""
        return JobStatus.model_validate(await self._call("POST", "/v1/jobs", body))

    async def status(self, job_id: str) -> JobStatus:
        """GET /v1/jobs/{id}."""
        return await self._client.status(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> JobStatus:
        """One long poll (GET /v1/jobs/{id}?wait=S): the final status, or the current one after S."""
        wait = max(0.0, min(timeout_s, MAX_WAIT_S))
        path = f"{_job_path(job_id)}?wait={wait:.3f}"
        return JobStatus.model_validate(await self._call("GET", path, timeout_s=wait + 30))

    def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's Server-Sent Events until the terminal one."""
        return self._client.watch(job_id)

    async def cancel(self, job_id: str) -> JobStatus:
        """POST /v1/jobs/{id}/cancel."""
        return await self._client.cancel(job_id)

    async def jobs(
        self,
        *,
        states: frozenset[JobState] = frozenset(),
        agent_id: str | None = None,
        tenant_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobList:
        """GET /v1/jobs with the same filters."""
        query: list[tuple[str, str]] = [("state", s.value) for s in sorted(states)]
        query += [
            (k, v) for k, v in (("agent_id", agent_id), ("tenant_id", tenant_id), ("cursor", cursor)) if v
        ]
        query.append(("limit", str(limit)))
        return JobList.model_validate(await self._call("GET", "/v1/jobs?" + urllib.parse.urlencode(query)))

    async def pending_reviews(self) -> list[JobStatus]:
        """GET /v1/reviews."""
        return [JobStatus.model_validate(s) for s in await self._call("GET", "/v1/reviews")]

    async def decide_review(self, job_id: str, *, approve: bool, note: str = "") -> JobStatus:
        """POST /v1/reviews/{id}/approve|reject."""
        verdict = "approve" if approve else "reject"
        path = f"/v1/reviews/{urllib.parse.quote(job_id, safe='')}/{verdict}"
        return JobStatus.model_validate(await self._call("POST", path, {"note": note}))


def _job_path(job_id: str) -> str:
    return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}"
