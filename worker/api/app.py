"""The ASGI application of `plangate serve`: jobs, review and admin under /v1, MCP at /mcp, health,
metrics, OpenAPI.

Every route takes its caller from the bearer token (worker/api/auth.py); a job the caller may not see
is a 404, exactly like one that does not exist. Jobs go through the caller's JobService
(worker/api/service.py: PlanClient scoped to the caller's tenant and agent), so the API enforces the
same rules as a trusted in-cluster producer, and the token travels with the job as its credential for
the worker's own check. The MCP tools (worker/mcp_server/) call the same JobService.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from redis.asyncio import Redis

from governance.api_tokens import Principal, Scope, token_digest
from governance.live_state import LockStore
from governance.models import AgentRecord, TenantRecord
from governance.registry import TenantRegistry
from ledger.verify import VerifyReport
from plangate_base import codec
from plangate_base.logs import get_logger
from plangate_base.vocabulary import JobState, StreamKind
from worker.admin import AgentAdmin
from worker.api.auth import Authenticator, Caller, caller, require
from worker.api.doctor_routes import Doctor, doctor_router
from worker.api.fast_submit import PATH as FAST_PATH
from worker.api.fast_submit import FastSubmit
from worker.api.limits import BodyLimits
from worker.api.models import (
    MAX_BATCH,
    MAX_PAGE,
    MAX_WAIT_S,
    BatchItem,
    BatchResult,
    BatchSubmission,
    Health,
    IssuedKey,
    JobList,
    JobSubmission,
    LedgerRecord,
    LockHeld,
    LoginLink,
    Reason,
    ReviewNote,
)
from worker.api.problems import ApiProblem, Problem, install, problem_body
from worker.api.queue_admin import queue_router
from worker.api.service import JobService
from worker.api.templates import templates_router
from worker.api.web import LOGIN_LINK_TTL_S, WEB, new_session_id, web_router
from worker.api.webhook_routes import webhook_router
from worker.client import PlanClient
from worker.errors import PlangateError
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.mcp_server.http_mount import McpMount
from worker.redis_conn import text_client
from worker.settings import Settings
from worker.web.live_view import LiveView

log = get_logger("plangate.api")

API_PREFIX = "/v1"
MAX_LEDGER_BACKLOG = 100_000  # /readyz fails when more ledger events than this wait to be written
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}, "description": what}
    for code, what in (
        (400, "bad request"),
        (401, "no, unknown or revoked token"),
        (403, "the token lacks the scope"),
        (404, "no such job (or not the caller's)"),
        (409, "conflict"),
        (413, "body too large or nested too deeply"),
        (422, "invalid request"),
        (429, "rate limited (Retry-After)"),
        (503, "Redis unreachable (Retry-After)"),
    )
}


def _job_links(job_id: str) -> dict[str, Any]:
    """OpenAPI links from an answer naming a job (`job_id`: a runtime expression) to what can be done
    with it: a client (and schemathesis's stateful test) follows them."""
    return {
        name: {"operationId": operation, "parameters": {"job_id": job_id}}
        for name, operation in (
            ("GetJob", "get_job"),
            ("CancelJob", "cancel_job"),
            ("GetJobLedger", "job_ledger"),
        )
    }


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _PROBLEMS[code] for code in (400, 401, 413, 422, 429, 503, *codes)}


def create_app(settings: Settings, *, open_access: bool = False, redis: Redis | None = None) -> FastAPI:
    """The API on `settings` (its own Redis pool unless `redis` is given). `open_access` makes every
    caller an admin without a token: for the embedded demo only."""
    keys = Keys(settings.key_prefix)
    registry = CollectorRegistry()
    requests_total = Counter(
        "plangate_api_requests", "API requests by route and status", ["route", "status"], registry=registry
    )
    doctor = Doctor(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = redis is None
        app.state.redis = redis if redis is not None else text_client(settings.redis_url, service=True)
        app.state.client = PlanClient(app.state.redis, settings)
        app.state.live_view = LiveView(app.state.redis, settings)
        app.state.auth = Authenticator(
            app.state.redis, keys, rate_per_s=settings.api_rate_limit_per_s, open_access=open_access
        )
        app.state.doctor = doctor
        try:
            async with doctor.running(app.state.redis), mcp.run():
                yield
        finally:
            if own:
                await app.state.redis.aclose()

    app = FastAPI(
        title="plangate",
        summary="A governed planning queue: submit planning jobs, follow them, read the governed plan.",
        version=_version(),
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # FastAPI's own OpenTelemetry (a check on every request) only when plangate's tracing is on;
        # the API's metrics are its Prometheus /metrics.
        telemetry={"tracing": settings.tracing, "metrics": False, "logs": False},
        generate_unique_id_function=lambda route: route.name,  # operationId: the route's function name
    )
    install(app)
    mcp = McpMount(app, _version())  # MCP over streamable HTTP at /mcp: the same tokens and rules

    def service(request: Request, principal: Principal) -> JobService:
        """The caller's operations (the same ones the MCP tools call)."""
        return JobService(request.app.state.client, principal, request.state.token)

    async def submit_one(
        request: Request, principal: Principal, body: dict[str, Any], header_key: str | None
    ) -> JobStatus:
        """The submit route's work (also what the fast path in worker/api/fast_submit.py calls)."""
        return await service(request, principal).submit(body, header_key)

    @app.post(
        f"{API_PREFIX}/jobs",
        status_code=202,
        response_model=JobStatus,
        responses={**_responses(403, 409), 202: {"links": _job_links("$response.body#/job_id")}},
        summary="Submit a planning job",
        tags=["jobs"],
    )
    async def submit(
        body: JobSubmission,  # type: ignore[valid-type]
        request: Request,
        response: Response,
        principal: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JobStatus:
        """Queue a job for the token's agent (or, with a tenant token, for the agent the body names).
        The same Idempotency-Key with the same body answers the same job; with another body, 409."""
        status = await submit_one(request, principal, body.model_dump(exclude_unset=True), idempotency_key)
        response.headers["Location"] = f"{API_PREFIX}/jobs/{status.job_id}"
        return status

    @app.post(
        f"{API_PREFIX}/jobs/batch",
        status_code=202,
        response_model=BatchResult,
        responses=_responses(403),
        summary=f"Submit up to {MAX_BATCH} planning jobs",
        tags=["jobs"],
    )
    async def submit_batch(body: BatchSubmission, request: Request, principal: Caller) -> BatchResult:
        """One result per item, in order: 202 with the job, or the item's problem. Each item may carry
        its own idempotency_key."""
        require(principal, Scope.AGENT, Scope.TENANT)
        jobs = service(request, principal)
        results: list[BatchItem] = []
        for index, item in enumerate(body.jobs):
            try:
                status = await jobs.submit(item.model_dump(exclude_unset=True))
                results.append(BatchItem(index=index, status=202, job=status))
            except ApiProblem as exc:
                results.append(_failed_item(index, exc.status, exc.code, exc.detail))
            except PlangateError as exc:
                results.append(_failed_item(index, 400, "bad_request", str(exc)))
        return BatchResult(results=results)

    @app.get(
        f"{API_PREFIX}/jobs",
        response_model=JobList,
        responses=_responses(403),
        summary="List the caller's jobs",
        tags=["jobs"],
    )
    async def list_jobs(
        request: Request,
        principal: Caller,
        state: Annotated[list[JobState] | None, Query(description="only these states (repeatable)")] = None,
        agent_id: Annotated[str | None, Query(max_length=64)] = None,
        tenant_id: Annotated[
            str | None, Query(max_length=64, description="admin and auditor tokens: the tenant to list")
        ] = None,
        since: Annotated[datetime | None, Query(description="submitted at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, Query(description="submitted at or before (ISO 8601)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=100)] = None,
    ) -> JobList:
        """Newest first. Agent tokens see their agent's jobs, tenant and reviewer tokens their tenant's;
        admin and auditor tokens name the tenant."""
        return await service(request, principal).jobs(
            states=frozenset(state or ()),
            agent_id=agent_id,
            tenant_id=tenant_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    @app.get(
        f"{API_PREFIX}/jobs/{{job_id}}",
        response_model=JobStatus,
        responses=_responses(404),
        summary="A job's status (long-polls with ?wait=S)",
        tags=["jobs"],
    )
    async def get_job(
        job_id: str,
        request: Request,
        principal: Caller,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for the end")] = 0,
    ) -> JobStatus:
        """The status object (the same as `plangate status --json`). With `wait`, answers when the job
        is terminal or `wait` seconds passed, whichever is first (then with the current status)."""
        return await service(request, principal).wait(job_id, wait)

    @app.get(
        f"{API_PREFIX}/jobs/{{job_id}}/events",
        responses={
            **_responses(404),
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "SSE"},
        },
        response_class=StreamingResponse,
        summary="A job's events as Server-Sent Events",
        tags=["jobs"],
    )
    async def job_events(
        job_id: str,
        request: Request,
        principal: Caller,
        last_event_id: Annotated[str | None, Header(max_length=45)] = None,
    ) -> StreamingResponse:
        """`phase` and `progress` events as they happen, then one `terminal` event whose data holds the
        final status; the stream ends after it. Each event's id resumes the stream (Last-Event-ID)."""
        jobs = service(request, principal)
        await jobs.status(job_id)  # a 404 before the stream starts
        after = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else "0"

        async def stream() -> AsyncIterator[str]:
            async for entry_id, event in jobs.watch_entries(job_id, after):
                data: dict[str, Any] = event.model_dump(mode="json")
                if event.kind is StreamKind.TERMINAL:
                    data["status"] = (await jobs.status(job_id)).model_dump(mode="json")
                yield f"id: {entry_id}\nevent: {event.kind}\ndata: {codec.dumps(data)}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post(
        f"{API_PREFIX}/jobs/{{job_id}}/cancel",
        response_model=JobStatus,
        responses=_responses(403, 404, 409),
        summary="Cancel a job",
        tags=["jobs"],
    )
    async def cancel_job(job_id: str, request: Request, principal: Caller) -> JobStatus:
        """At once when queued; a running job stops at its next heartbeat (`cancel_requested` until
        then). 409 when it has ended already."""
        return await service(request, principal).cancel(job_id)

    @app.get(
        f"{API_PREFIX}/jobs/{{job_id}}/ledger",
        response_model=LedgerRecord,
        responses=_responses(403, 404),
        summary="A job's ledger record (auditors)",
        tags=["audit"],
    )
    async def job_ledger(job_id: str, principal: Caller) -> LedgerRecord:
        """Every ledger event of the job, in order, from the ledger file on this API's host
        (PLANGATE_LEDGER_PATH; 503 where the API runs without it). Auditor and admin tokens."""
        require(principal, Scope.AUDITOR)
        from ledger import queries

        if not await asyncio.to_thread(settings.ledger_path.is_file):
            raise ApiProblem(
                503,
                "ledger_unavailable",
                "this API process has no ledger file (PLANGATE_LEDGER_PATH): ask one beside the writer",
            )
        record = await queries.show_job(settings.ledger_path, job_id)
        if not record["events"]:
            raise ApiProblem(404, "not_found", f"no ledger events for job {job_id!r}")
        return LedgerRecord.model_validate(record)

    @app.get(
        f"{API_PREFIX}/ledger/verify",
        response_model=VerifyReport,
        responses=_responses(403),
        summary="Verify the ledger (auditors)",
        tags=["audit"],
    )
    async def ledger_verify(request: Request, principal: Caller) -> VerifyReport:
        """`plangate ledger verify` on the ledger file on this API's host: every row's hash and link, the
        Merkle tree, the file's anchors and checkpoints, those published in Redis and the checkpoint sink,
        signatures checked with PLANGATE_LEDGER_TRUSTED_KEY (else, with a warning, the .pub beside the
        signing key on this host). 503 `ledger_unavailable` where the API runs without the file."""
        require(principal, Scope.AUDITOR)
        from ledger.signing import load_public_key, load_trusted_key, public_key_path

        path = settings.ledger_path
        if not await asyncio.to_thread(path.is_file):
            raise ApiProblem(
                503, "ledger_unavailable", "this API process has no ledger file (PLANGATE_LEDGER_PATH)"
            )
        key, name, warning = None, None, None
        if settings.ledger_trusted_key is not None:
            key, name = await asyncio.to_thread(load_trusted_key, settings.ledger_trusted_key)
        else:
            key_file = public_key_path(settings.signing_key_path())
            if await asyncio.to_thread(key_file.exists):
                key = await asyncio.to_thread(load_public_key, key_file)
                warning = f"no PLANGATE_LEDGER_TRUSTED_KEY: trusted the key on this host ({key_file})"
            else:
                warning = "no PLANGATE_LEDGER_TRUSTED_KEY: signatures not checked"
        from worker import ledger_verification as lv

        published = await lv.fetch_published(request.app.state.redis, keys)
        evidence = await lv.gather_evidence(settings, published)
        report = await lv.verify_live(path, key, evidence, key_name=name, grace_s=lv.live_grace_s(settings))
        if warning:
            report.warnings.append(warning)
        return report

    @app.put(
        f"{API_PREFIX}/agents/{{agent_id}}",
        response_model=AgentRecord,
        responses=_responses(403),
        summary="Add or replace an agent",
        tags=["admin"],
    )
    async def put_agent(agent_id: str, body: AgentRecord, request: Request, principal: Caller) -> AgentRecord:
        """Checked as `plangate agents add` checks it (its lists against the vocabulary, its tenant) and
        recorded in the ledger. The body's agent_id must be the path's."""
        require(principal, Scope.ADMIN)
        if body.agent_id != agent_id:
            raise ApiProblem(
                400, "bad_request", f"the body is agent {body.agent_id!r}, the path {agent_id!r}"
            )
        await AgentAdmin(request.app.state.redis, keys).save_agent(
            body, by=f"api:{principal.token_id}", source="api"
        )
        return body

    @app.get(
        f"{API_PREFIX}/reviews",
        response_model=list[JobStatus],
        responses=_responses(403),
        summary="Escalated plans waiting for review",
        tags=["review"],
    )
    async def pending_reviews(request: Request, principal: Caller) -> list[JobStatus]:
        """The reviewer's tenant's escalated jobs, oldest first (reviewer tokens only)."""
        return await service(request, principal).pending_reviews()

    @app.post(
        f"{API_PREFIX}/reviews/{{job_id}}/{{verdict}}",
        response_model=JobStatus,
        responses=_responses(403, 404, 409),
        summary="Approve or reject an escalated plan",
        tags=["review"],
    )
    async def decide_review(
        job_id: str, verdict: str, body: ReviewNote, request: Request, principal: Caller
    ) -> JobStatus:
        """`verdict` is `approve` or `reject`; the decision and its note are recorded in the ledger."""
        if verdict not in ("approve", "reject"):
            raise ApiProblem(404, "not_found", f"no review action {verdict!r} (approve or reject)")
        jobs = service(request, principal)
        return await jobs.decide_review(job_id, approve=verdict == "approve", note=body.note)

    @app.get(
        f"{API_PREFIX}/agents/{{agent_id}}",
        response_model=AgentRecord,
        responses=_responses(403, 404),
        summary="An agent's record",
        tags=["admin"],
    )
    async def get_agent(agent_id: str, request: Request, principal: Caller) -> AgentRecord:
        require(principal, Scope.ADMIN)
        agent = await AgentAdmin(request.app.state.redis, keys).agents.get(agent_id)
        if agent is None:
            raise ApiProblem(404, "unknown_agent", f"no agent with id {agent_id!r}")
        return agent

    @app.post(
        f"{API_PREFIX}/agents/{{agent_id}}/{{change}}",
        response_model=AgentRecord,
        responses=_responses(403, 404),
        summary="Revoke, restore or reset the error budget of an agent",
        tags=["admin"],
    )
    async def change_agent(
        agent_id: str, change: str, body: Reason, request: Request, principal: Caller
    ) -> AgentRecord:
        """`change` is `revoke` (needs a reason), `restore` or `reset-budget`; recorded in the ledger."""
        require(principal, Scope.ADMIN)
        admin = AgentAdmin(request.app.state.redis, keys)
        agent = await admin.agents.get(agent_id)
        if agent is None:
            raise ApiProblem(404, "unknown_agent", f"no agent with id {agent_id!r}")
        by = f"api:{principal.token_id}"
        if change == "revoke":
            await admin.revoke(agent_id, reason=body.reason, by=by)
        elif change == "restore":
            await admin.restore(agent_id, by=by, reason=body.reason)
        elif change == "reset-budget":
            await admin.reset_budget(agent_id, by=by, reason=body.reason)
        else:
            raise ApiProblem(404, "not_found", f"no agent change {change!r} (revoke, restore, reset-budget)")
        return agent

    @app.post(
        f"{API_PREFIX}/agents/{{agent_id}}/key",
        response_model=IssuedKey,
        status_code=201,
        responses=_responses(403, 404),
        summary="Issue (or replace) an agent's key",
        tags=["admin"],
    )
    async def issue_key(agent_id: str, request: Request, principal: Caller) -> IssuedKey:
        """The new key is in the answer only: it is stored hashed and the old one stops working."""
        require(principal, Scope.ADMIN)
        key = await AgentAdmin(request.app.state.redis, keys).issue_agent_key(
            agent_id, by=f"api:{principal.token_id}"
        )
        return IssuedKey(agent_id=agent_id, key=key)

    @app.get(
        f"{API_PREFIX}/tenants/{{tenant_id}}",
        response_model=TenantRecord,
        responses=_responses(403, 404),
        summary="A tenant's record (quotas)",
        tags=["admin"],
    )
    async def get_tenant(tenant_id: str, request: Request, principal: Caller) -> TenantRecord:
        """Admin tokens any tenant; tenant tokens their own."""
        if not (
            principal.scope is Scope.ADMIN
            or (principal.scope is Scope.TENANT and principal.tenant_id == tenant_id)
        ):
            raise ApiProblem(
                403, "forbidden", "tenants are read by admin tokens, or by the tenant's own token"
            )
        tenant = await TenantRegistry(request.app.state.redis, keys).get(tenant_id)
        if tenant is None:
            raise ApiProblem(404, "not_found", f"no tenant with id {tenant_id!r}")
        return tenant

    @app.put(
        f"{API_PREFIX}/tenants/{{tenant_id}}",
        response_model=TenantRecord,
        responses=_responses(403),
        summary="Add or replace a tenant (quotas)",
        tags=["admin"],
    )
    async def put_tenant(
        tenant_id: str, body: TenantRecord, request: Request, principal: Caller
    ) -> TenantRecord:
        """The body's tenant_id must be the path's."""
        require(principal, Scope.ADMIN)
        if body.tenant_id != tenant_id:
            raise ApiProblem(
                400, "bad_request", f"the body is tenant {body.tenant_id!r}, the path {tenant_id!r}"
            )
        await TenantRegistry(request.app.state.redis, keys).put(body)
        return body

    @app.get(
        f"{API_PREFIX}/locks",
        response_model=list[LockHeld],
        responses=_responses(403),
        summary="Resource locks held now",
        tags=["admin"],
    )
    async def locks(request: Request, principal: Caller) -> list[LockHeld]:
        require(principal, Scope.ADMIN, Scope.AUDITOR)
        holders = await LockStore(request.app.state.redis, keys).holders()
        return [LockHeld(resource=h.resource, job_id=h.job_id, ttl_ms=h.ttl_ms) for h in holders]

    @app.get(
        f"{API_PREFIX}/dead-letters",
        response_model=list[JobStatus],
        responses=_responses(403),
        summary="Jobs that ended failed, newest first",
        tags=["admin"],
    )
    async def dead_letters(
        request: Request, principal: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[JobStatus]:
        require(principal, Scope.ADMIN, Scope.AUDITOR, Scope.TENANT)
        return await service(request, principal).client.failed(limit)

    @app.post(
        f"{API_PREFIX}/web/login-links",
        response_model=LoginLink,
        status_code=201,
        responses=_responses(),
        summary="A one-time link that signs a browser in to the live view",
        tags=["web"],
    )
    async def login_link(request: Request, principal: Caller) -> LoginLink:
        """Open `url` within `expires_in_s` seconds: it signs the browser in as this token (once) and
        goes to `/web/` (or `?next=/web/job/ID`). For scripts and headless browsers; people can paste
        their token into /web/login instead."""
        nonce = new_session_id()
        if request.state.token is None:
            raise ApiProblem(400, "bad_request", "no token to sign in with (the API runs with --no-auth)")
        digest = token_digest(request.state.token)
        await request.app.state.redis.set(keys.web_login(nonce), digest, ex=LOGIN_LINK_TTL_S)
        return LoginLink(url=f"{WEB}/login/{nonce}", expires_in_s=LOGIN_LINK_TTL_S)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "not ready"}},
        tags=["health"],
        summary="Redis reachable, workers alive, ledger backlog bounded",
    )
    async def readyz(request: Request, response: Response) -> Health:
        redis_client: Redis = request.app.state.redis
        try:
            await redis_client.ping()
            since_ms = f"({int((time.time() - settings.liveness_window_s) * 1000)}"
            workers = int(await redis_client.zcount(keys.workers_accepting(), since_ms, "+inf"))
            backlog = int(await redis_client.xlen(keys.ledger_stream()))
        except Exception as exc:  # any failure to read is "not ready", with its type only
            response.status_code = 503
            return Health(status="unavailable", redis=False, detail=f"Redis: {type(exc).__name__}")
        problems = []
        if workers == 0:
            problems.append("no live worker")
        if backlog > MAX_LEDGER_BACKLOG:
            problems.append(f"ledger backlog {backlog} > {MAX_LEDGER_BACKLOG}")
        if problems:
            response.status_code = 503
            return Health(status="unready", redis=True, workers=workers, detail="; ".join(problems))
        return Health(status="ok", redis=True, workers=workers)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of this API process",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(doctor_router(_responses(403)))
    app.include_router(webhook_router(keys, _responses))
    app.include_router(templates_router(settings, caller))  # worker/api/templates.py
    app.include_router(queue_router(settings, Caller, _responses(403)))
    # After the API's routes (a request is matched in route order): MCP, then the web view.
    app.router.routes.append(mcp.route())
    app.include_router(web_router(keys))
    # Outermost last: counting, then the body limits, then the submit fast path, then FastAPI's own.
    route = next(r for r in routes_of(app.routes) if r.path == FAST_PATH and "POST" in r.methods)
    app.add_middleware(FastSubmit, model=JobSubmission, submit=submit_one, route=route)
    app.add_middleware(BodyLimits)
    app.add_middleware(CountRequests, counter=requests_total)
    return app


class CountRequests:
    """ASGI middleware: counts each answered request by its route's template and status."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app = app
        self.counter = counter
        self._paths: dict[Any, str] = {}

    def _template(self, scope: dict[str, Any]) -> str:
        """The matched route's path template (never the raw path: ids would explode the label set)."""
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        endpoint = scope.get("endpoint")  # plain Starlette routes (/openapi.json, /docs) set only this
        if endpoint is None:
            return "unmatched"
        if not self._paths:
            self._paths = {getattr(r, "endpoint", None): r.path for r in routes_of(scope["app"].routes)}
        return self._paths.get(endpoint, "unmatched")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.counter.labels(self._template(scope), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def routes_of(routes: list[Any]) -> list[Any]:
    """Every route with a path, those of included routers too (FastAPI keeps those in a wrapper)."""
    flat: list[Any] = []
    for route in routes:
        if hasattr(route, "path"):
            flat.append(route)
        elif hasattr(route, "original_router"):
            flat += routes_of(route.original_router.routes)
    return flat


def _failed_item(index: int, status: int, code: str, detail: str) -> BatchItem:
    return BatchItem(index=index, status=status, problem=problem_body(status, code, detail))


def _version() -> str:
    from worker import __version__

    return __version__


__all__ = ["create_app"]
