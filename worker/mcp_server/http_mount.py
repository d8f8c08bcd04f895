"""MCP over streamable HTTP at /mcp on the API app (`plangate serve`).

Every request proves its bearer token with the API's own Authenticator before the SDK sees it (401,
429 and 503 as the same problems the REST routes answer), and each tool call runs the REST routes'
JobService for that request's principal: one set of scope and tenant rules for both doors. The
transport is stateless (no session lives in one API process), so any number of API processes serve
/mcp behind a load balancer, as they serve /v1.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.routing import Route

from governance.api_tokens import Principal, Scope
from worker.api.auth import bearer
from worker.api.problems import RETRY_AFTER_UNAVAILABLE_S, ApiProblem, problem
from worker.api.service import JobService
from worker.mcp_server.jobs import Jobs

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

MCP_PATH = "/mcp"


class McpMount:
    """The /mcp route of one API app and the SDK's session manager behind it.

    The SDK (a fifth of the API process's memory, and half a second of imports) is loaded when the first
    request comes to /mcp, not before: an API nobody reaches over MCP never carries it. Its session
    manager then runs in a task of its own until the app's lifespan ends (`run()`), so its task group
    is entered and left by the same task, as anyio requires."""

    def __init__(self, app: FastAPI, version: str) -> None:
        self._app = app
        self._version = version
        self._manager: StreamableHTTPSessionManager | None = None
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None

    def route(self) -> Route:
        """The Starlette route to add to the app (not an OpenAPI operation: MCP has its own schema)."""
        return Route(MCP_PATH, endpoint=self, include_in_schema=False)  # an ASGI app: every method

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """For the app's lifespan: at its end, the session manager (if one was started) stops."""
        try:
            yield
        finally:
            self._stop.set()
            if self._serving is not None:
                await self._serving

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running session manager, started by the first call."""
        if self._serving is None:
            self._serving = asyncio.create_task(self._serve())
        await self._started.wait()
        if self._manager is None:  # it could not start: its error goes to this caller (and the next)
            await asyncio.shield(self._serving)
            raise RuntimeError("the MCP session manager stopped")
        return self._manager

    async def _serve(self) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        from worker.mcp_server.server import build_server

        try:
            manager = StreamableHTTPSessionManager(
                build_server(self._open_jobs, self._version), stateless=True, json_response=False
            )
            async with manager.run():
                self._manager = manager
                self._started.set()
                await self._stop.wait()
        finally:
            self._started.set()  # (also when it failed: callers waiting for it then see why)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        origin = request.headers.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            # A browser page of another origin (DNS rebinding, as the MCP spec warns): MCP clients send
            # no Origin, and the live view, the one browser client of this app, is same-origin.
            refused = problem(403, "forbidden", "cross-origin requests to /mcp are refused")
            await refused(scope, receive, send)
            return
        try:
            credentials = await bearer(request)
            principal = await self._app.state.auth.principal(request, credentials)
        except ApiProblem as exc:
            await problem(exc.status, exc.code, exc.detail, headers=exc.headers)(scope, receive, send)
            return
        except (RedisConnectionError, RedisTimeoutError):
            headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}
            answer = problem(
                503, "unavailable", "the queue's Redis server cannot be reached", headers=headers
            )
            await answer(scope, receive, send)
            return
        request.state.principal = principal  # the SDK hands this request (its scope) to the tool call
        await (await self.manager()).handle_request(scope, receive, send)

    async def _open_jobs(self, ctx: ServerRequestContext[Any]) -> tuple[Jobs, Scope | None]:
        request = ctx.request
        if not isinstance(request, Request):
            raise ApiProblem(401, "unauthenticated", "an MCP message without its HTTP request")
        principal: Principal = request.state.principal
        return JobService(self._app.state.client, principal, request.state.token), principal.scope
