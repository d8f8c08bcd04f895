"""The MCP server (the SDK's low-level Server): tools/list and tools/call over `Jobs`. Which caller a
message comes from is the transport's business (`Open`): the HTTP mount reads the principal its bearer
check put on the request, stdio has one caller for the process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_REQUEST,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from governance.api_tokens import Scope
from worker.api.problems import ApiProblem, status_and_code
from worker.errors import PlangateError, describe_validation_error
from worker.job_models import JobEvent
from worker.mcp_server.jobs import Jobs
from worker.mcp_server.tools import BY_NAME, Report, describe, describe_event, visible

SERVER_NAME = "plangate"
Open = Callable[[ServerRequestContext[Any]], Awaitable[tuple[Jobs, Scope | None]]]


def build_server(open_jobs: Open, version: str) -> Server[Any]:
    """The MCP server whose tools call what `open_jobs` gives for each message's caller."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        try:
            _, scope = await open_jobs(ctx)
        except ApiProblem as exc:  # (stdio on Redis: the token was revoked since the start)
            raise MCPError(INVALID_REQUEST, f"{exc.code}: {exc.detail}") from None
        return ListToolsResult(tools=[spec.tool() for spec in visible(scope)])

    async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        spec = BY_NAME.get(params.name)
        if spec is None:
            return _failed("not_found", f"no tool {params.name!r}")
        try:
            args = spec.input.model_validate(params.arguments or {})
        except ValidationError as exc:
            return _failed("bad_request", describe_validation_error(exc))
        try:
            jobs, _ = await open_jobs(ctx)
            answer = await spec.run(jobs, args, _reporter(ctx))
        except ApiProblem as exc:
            return _failed(exc.code, exc.detail)
        except PlangateError as exc:
            return _failed(status_and_code(exc)[1], str(exc))
        except (RedisConnectionError, RedisTimeoutError):
            return _failed("unavailable", "the queue's Redis server cannot be reached")
        return CallToolResult(
            content=[TextContent(type="text", text=describe(answer))],
            structured_content=answer.model_dump(mode="json"),
        )

    return Server(SERVER_NAME, version=version, on_list_tools=list_tools, on_call_tool=call_tool)


def _failed(code: str, detail: str) -> CallToolResult:
    """A tool error the agent reads (`code: detail`), the same words as the API's problems."""
    return CallToolResult(content=[TextContent(type="text", text=f"{code}: {detail}")], is_error=True)


def _reporter(ctx: ServerRequestContext[Any]) -> Report | None:
    """Progress notifications for this call, when the client asked for them (a progressToken)."""
    if not ctx.meta or ctx.meta.get("progress_token") is None:
        return None
    sent = 0

    async def report(event: JobEvent) -> None:
        nonlocal sent
        sent += 1  # progress must grow with every notification; the message carries phase and tokens
        await ctx.session.report_progress(float(sent), None, describe_event(event))

    return report
