"""`python -m bench.mcp_load`: an MCP `submit_plan` round trip over streamable HTTP against REST's
`POST /v1/jobs`, side by side on one `plangate serve` process.

Both paths submit the same request as the same tenant token (the rate limit off), one at a time, in
interleaved rounds so both see the same machine: REST with aiohttp on a kept-alive connection, MCP with
the official client (`mcp.ClientSession` on one initialized session; each `tools/call` is one POST whose
answer is an SSE stream), and the same tools/call as a bare POST (aiohttp), which separates the server's
part from the client library's. Also the cost of opening an MCP session (initialize + tools/list), which a
client pays once, and the API's CPU per submit on each path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from bench.infra import Bench, cpu_seconds
from bench.report import Row, median, percentile, render
from governance.api_tokens import Scope
from worker.admin import AgentAdmin
from worker.keys import Keys

_PROTOCOL = "2025-06-18"  # a handshake-era version: the stateless path takes a tools/call without initialize
_REQUEST = {"agent_id": "llm-planner-001", "description": "a job for the MCP benchmark"}


async def _timed(calls: int, submit: Callable[[], Awaitable[None]]) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await submit()
        latencies.append(time.perf_counter() - started)
    return latencies


async def measure(bench: Bench, calls: int, sessions: int) -> dict[str, float]:
    prefix = bench.prefix()
    await bench.keyless_seed_agent(prefix)
    redis = bench.redis()
    admin = AgentAdmin(redis, Keys(prefix))
    token, _ = await admin.issue_token(Scope.TENANT, tenant_id="default", name="bench", by="bench")
    await redis.aclose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=bench.redis_url, PLANGATE_KEY_PREFIX=prefix, PLANGATE_API_RATE_LIMIT_PER_S="0"
    )
    url, api_pid = await asyncio.to_thread(bench.start_api, [sys.executable, "-m", "worker.cli"], env)
    headers = {"Authorization": f"Bearer {token}"}
    n: dict[str, float] = {}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as mcp_http,
        streamable_http_client(url + "/mcp", http_client=mcp_http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()

        async def via_rest() -> None:
            async with http.post(url + "/v1/jobs", json=_REQUEST) as answer:
                if answer.status != 202:
                    raise RuntimeError(f"submit answered {answer.status}: {await answer.text()}")
                await answer.read()

        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        call["params"] = {"name": "submit_plan", "arguments": _REQUEST}
        raw_headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": _PROTOCOL}

        async def via_raw_mcp() -> None:  # the same tools/call without a client library: the server's part
            async with http.post(url + "/mcp", json=call, headers=raw_headers) as answer:
                body = await answer.read()
                if answer.status != 200 or b'"isError":false' not in body:
                    raise RuntimeError(f"tools/call answered {answer.status}: {body[:200]!r}")

        async def via_mcp() -> None:
            result = await session.call_tool("submit_plan", _REQUEST)
            if result.is_error or not result.structured_content:
                raise RuntimeError(f"submit_plan failed: {result.content}")

        await _timed(20, via_rest)  # warm-up of both paths (connections, first imports)
        await _timed(20, via_mcp)
        await _timed(20, via_raw_mcp)
        latencies: dict[str, list[float]] = {"rest": [], "mcp": [], "raw": []}
        cpu: dict[str, list[float]] = {"rest": [], "mcp": [], "raw": []}
        rounds = 3
        for _ in range(rounds):  # interleaved rounds, so every path sees the same machine
            for path, submit in (("rest", via_rest), ("mcp", via_mcp), ("raw", via_raw_mcp)):
                before = cpu_seconds(api_pid)
                latencies[path] += await _timed(calls // rounds, submit)
                cpu[path].append((cpu_seconds(api_pid) - before) / (calls // rounds))
    opens = []
    for _ in range(sessions):
        started = time.perf_counter()
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as fresh_http,
            streamable_http_client(url + "/mcp", http_client=fresh_http) as (read, write),
            ClientSession(read, write) as fresh,
        ):
            await fresh.initialize()
            await fresh.list_tools()
            opens.append(time.perf_counter() - started)
    for path, name in (("rest", "mcp.rest"), ("mcp", "mcp.client"), ("raw", "mcp.raw")):
        n[f"{name}_p50_ms"] = median(latencies[path]) * 1000
        n[f"{name}_p99_ms"] = percentile(latencies[path], 99) * 1000
        n[f"{name}_cpu_ms"] = median(cpu[path]) * 1000
    n["mcp.ratio_p50"] = n["mcp.client_p50_ms"] / n["mcp.rest_p50_ms"]
    n["mcp.raw_ratio_p50"] = n["mcp.raw_p50_ms"] / n["mcp.rest_p50_ms"]
    n["mcp.open_p50_ms"] = median(opens) * 1000
    n["mcp.calls"], n["mcp.sessions"] = float(calls), float(sessions)
    return n


def rows(n: dict[str, float]) -> list[Row]:
    """The MCP section of the table."""
    section = f"mcp (one `plangate serve`, tenant token; {n['mcp.calls']:.0f} sequential submits per path)"
    return [
        Row(
            section, "POST /v1/jobs: p50 / p99", f"{n['mcp.rest_p50_ms']:.2f} / {n['mcp.rest_p99_ms']:.2f} ms"
        ),
        Row(
            section,
            "MCP submit_plan (streamable HTTP): p50 / p99",
            f"{n['mcp.client_p50_ms']:.2f} / {n['mcp.client_p99_ms']:.2f} ms",
        ),
        Row(section, "MCP submit_plan p50 over REST p50", f"{n['mcp.ratio_p50']:.2f} x"),
        Row(
            section,
            "raw tools/call POST (aiohttp, no MCP client): p50 / p99",
            f"{n['mcp.raw_p50_ms']:.2f} / {n['mcp.raw_p99_ms']:.2f} ms ({n['mcp.raw_ratio_p50']:.2f} x REST)",
        ),
        Row(
            section,
            "API process CPU per submit: REST / MCP client / raw tools/call",
            f"{n['mcp.rest_cpu_ms']:.2f} / {n['mcp.client_cpu_ms']:.2f} / {n['mcp.raw_cpu_ms']:.2f} ms",
        ),
        Row(
            section,
            f"MCP session open (initialize + tools/list), median of {n['mcp.sessions']:.0f}",
            f"{n['mcp.open_p50_ms']:.1f} ms",
        ),
    ]


async def _run(args: argparse.Namespace) -> dict[str, float]:
    bench = Bench.open(args.redis_url)
    try:
        return await measure(bench, args.calls, args.sessions)
    finally:
        await bench.close()


def main() -> None:
    """Measure, print the rows (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_load", description=__doc__)
    parser.add_argument("--calls", type=int, default=600, help="sequential submits per path (default 600)")
    parser.add_argument("--sessions", type=int, default=20, help="MCP sessions opened (default 20)")
    parser.add_argument("--redis-url", help="use this Redis (a db index of its own); default: start one")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    numbers = asyncio.run(_run(args))
    print(
        render(rows(numbers), f"`python -m bench.mcp_load --calls {args.calls} --sessions {args.sessions}`")
    )
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
