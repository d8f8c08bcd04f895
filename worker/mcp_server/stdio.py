"""`plangate mcp`: the MCP tools over stdio for one local agent, talking to the HTTP API with a token
(HttpJobs), or to Redis directly for trusted local use (JobService, as the API's routes)."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from redis.asyncio import Redis

from governance.api_tokens import Principal, Scope
from worker.api.auth import Authenticator
from worker.api.problems import ApiProblem
from worker.api.service import JobService
from worker.client import PlanClient
from worker.errors import PlangateError, QueueUnavailable, Unauthenticated
from worker.http_client import HttpPlanClient
from worker.keys import Keys
from worker.mcp_server.jobs import HttpJobs, Jobs
from worker.mcp_server.server import Open, build_server
from worker.settings import Settings

# With the Redis URL and no token, the local agent is trusted like an operator's CLI on that URL.
LOCAL_PRINCIPAL = Principal(token_id="local", scope=Scope.ADMIN, name="plangate mcp on the Redis URL")


def over_http(api_url: str, token: str) -> Open:
    """Every tool call goes to the API at `api_url` with `token` (the API checks it each time)."""
    jobs = HttpJobs(HttpPlanClient(api_url, token))

    async def open_jobs(ctx: ServerRequestContext[Any]) -> tuple[Jobs, Scope | None]:
        return jobs, None

    return open_jobs


def over_redis(redis: Redis, settings: Settings, token: str | None) -> Open:
    """Tool calls run JobService on Redis: as `token`'s principal, checked again at every call (a
    revoked token stops at once), or without a token as LOCAL_PRINCIPAL, whose jobs carry
    PLANGATE_AGENT_KEY when it is set."""
    base = PlanClient(redis, settings)
    auth = Authenticator(redis, Keys(settings.key_prefix), rate_per_s=0, open_access=False)
    agent_key = settings.agent_key.get_secret_value() if settings.agent_key else None

    async def open_jobs(ctx: ServerRequestContext[Any]) -> tuple[Jobs, Scope | None]:
        if token is None:
            return JobService(base, LOCAL_PRINCIPAL, agent_key), LOCAL_PRINCIPAL.scope
        principal = await auth.of_token(token)
        return JobService(base, principal, token), principal.scope

    return open_jobs


async def check_api_token(api_url: str, token: str) -> None:
    """Unauthenticated (a wrong token) or QueueUnavailable (no API there) before serving, so a bad
    configuration is one line at start rather than an error at every tool call."""
    client = HttpPlanClient(api_url, token)
    try:
        await asyncio.to_thread(client.transport.call, "GET", "/v1/jobs?limit=1")
    except (Unauthenticated, QueueUnavailable):
        raise
    except PlangateError:
        pass  # an admin or auditor token lists no tenant by default: the token itself is good


async def check_redis_token(redis: Redis, settings: Settings, token: str) -> None:
    """Unauthenticated unless `token` is a live token of this deployment."""
    auth = Authenticator(redis, Keys(settings.key_prefix), rate_per_s=0, open_access=False)
    try:
        await auth.of_token(token)
    except ApiProblem as exc:
        raise Unauthenticated(f"PLANGATE_TOKEN: {exc.detail}") from None


async def serve_stdio(open_jobs: Open, version: str) -> None:
    """Serve MCP on this process's stdin and stdout until the client closes them."""
    server = build_server(open_jobs, version)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
