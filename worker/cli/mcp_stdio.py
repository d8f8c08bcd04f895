"""`plangate mcp`: the MCP server over stdio, for an agent that starts it as a subprocess."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.settings import Settings

EXIT_BAD_INPUT = 2


async def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    """Serve MCP on stdin/stdout: over the HTTP API with PLANGATE_API_URL + PLANGATE_TOKEN, else on
    PLANGATE_REDIS_URL (trusted local use). Logs go to stderr: stdout is the protocol's."""
    from worker import __version__
    from worker.mcp_server.stdio import check_api_token, check_redis_token, over_http, over_redis, serve_stdio

    api_url = args.mcp_api_url or os.environ.get("PLANGATE_API_URL")
    token = args.mcp_token or os.environ.get("PLANGATE_TOKEN") or None
    if api_url:
        if token is None:
            sys.stderr.write("plangate: mcp with an API URL needs a token (PLANGATE_TOKEN or --token)\n")
            return EXIT_BAD_INPUT
        await check_api_token(api_url, token)
        await serve_stdio(over_http(api_url, token), __version__)
        return 0
    from worker.redis_conn import text_client

    redis = text_client(settings.redis_url)
    try:
        await redis.ping()  # a wrong Redis URL is one line and exit 3 now, not an error per tool call
        if token is not None:
            await check_redis_token(redis, settings, token)
        await serve_stdio(over_redis(redis, settings, token), __version__)
    finally:
        await redis.aclose()
    return 0


def add_mcp_commands(sub: Any) -> None:
    """Register `plangate mcp`."""
    p = sub.add_parser(
        "mcp",
        help="the MCP server over stdio for a local agent (tools: submit_plan, wait_for_job, ...)",
        description="Serve plangate's MCP tools on stdin/stdout. With PLANGATE_API_URL and PLANGATE_TOKEN "
        "(or --api and --token) every call goes to `plangate serve` as that token; otherwise it runs on "
        "PLANGATE_REDIS_URL for trusted local use (as PLANGATE_TOKEN's principal when set, else with an "
        "operator's rights). The same tools are served over streamable HTTP at /mcp by `plangate serve`.",
    )
    p.add_argument(
        "--api",
        dest="mcp_api_url",
        metavar="URL",
        default=None,
        help="the API's URL (default PLANGATE_API_URL)",
    )
    p.add_argument(
        "--token",
        dest="mcp_token",
        metavar="TOKEN",
        default=None,
        help="the API token (default PLANGATE_TOKEN)",
    )
    p.set_defaults(run=cmd_mcp)
