"""The MCP server end to end with the official client (`mcp.ClientSession`): over streamable HTTP at
/mcp on a real `plangate serve`, and over stdio with `plangate mcp` as the README's client
configuration starts it (to the API with a token, and on Redis). A real worker and the scripted LLM
endpoint run the jobs (tests/e2e/api_deployment.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from plangate_base.vocabulary import Decision, JobState
from tests.e2e.api_deployment import Deployment, call
from tests.e2e.test_readme import readme_blocks
from worker.mcp_server.tools import TOOLS

pytestmark = pytest.mark.e2e

JOB_TOOLS = {"submit_plan", "get_job", "wait_for_job", "cancel_job", "list_my_jobs"}
REVIEW_TOOLS = {"list_reviews", "approve_plan", "reject_plan"}
_PLACEHOLDER_URL = "https://plangate.example.com"
_PLACEHOLDER_TOKEN = "YOUR_PLANGATE_TOKEN"


@pytest.fixture(scope="module")
def dep(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(redis_base_url, tmp_path_factory.mktemp("mcp"))
    try:
        yield deployment.start(workers=1)
    finally:
        deployment.stop()


def readme_config(form: str) -> dict[str, Any]:
    """The README's `mcpServers` entry of one form: "http" (a url) or "stdio" (a command)."""
    for block in readme_blocks():
        if block.lang == "json" and "mcpServers" in block.code:
            server = json.loads(block.code)["mcpServers"]["plangate"]
            if ("url" in server) == (form == "http"):
                return server
    raise AssertionError(f"the README has no {form} mcpServers configuration")


def _filled(text: str, url: str, token: str) -> str:
    return text.replace(_PLACEHOLDER_URL, url).replace(_PLACEHOLDER_TOKEN, token)


@asynccontextmanager
async def http_session(dep: Deployment, token: str) -> AsyncIterator[ClientSession]:
    """A client session over streamable HTTP, configured as the README's HTTP form says."""
    server = readme_config("http")
    headers = {k: _filled(v, dep.url, token) for k, v in server["headers"].items()}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(90.0)) as client,
        streamable_http_client(_filled(server["url"], dep.url, token), http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(dep: Deployment, env: dict[str, str]) -> AsyncIterator[ClientSession]:
    """`plangate mcp` started as the README's stdio form says, with `env` over the deployment's."""
    server = readme_config("stdio")
    bin_dir = str(Path(sys.executable).parent)
    params = StdioServerParameters(
        command=str(Path(bin_dir) / server["command"]),
        args=server["args"],
        env={**dep.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
    )
    with (dep.workdir / "mcp-stdio.log").open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def submit_and_wait(session: ClientSession, **request: Any) -> tuple[dict[str, Any], list[Any]]:
    """submit_plan, then wait_for_job with a progress callback until the job ends: the final structured
    content and the progress notifications received."""
    submitted = await session.call_tool("submit_plan", request)
    assert not submitted.is_error, text_of(submitted)
    job = submitted.structured_content
    assert job is not None and job["state"] in (JobState.QUEUED, JobState.RUNNING)  # (a worker is quick)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    brief = await session.call_tool("wait_for_job", {"job_id": job["job_id"], "timeout_s": 0.2})
    if request.get("model") == "scripted-slow":  # streams for ~5 s: still going after 0.2 s
        assert brief.structured_content is not None and not brief.is_error
        assert brief.structured_content["state"] in (JobState.QUEUED, JobState.RUNNING)
        assert "call wait_for_job again" in brief.structured_content["hint"] in text_of(brief)
    for _ in range(5):
        waited = await session.call_tool(
            "wait_for_job", {"job_id": job["job_id"], "timeout_s": 30}, progress_callback=on_progress
        )
        assert not waited.is_error, text_of(waited)
        final = waited.structured_content
        assert final is not None
        if final["hint"] is None:
            return final | {"text": text_of(waited)}, progress
        assert final["state"] in (JobState.QUEUED, JobState.RUNNING) and "again" in final["hint"]
    raise AssertionError("the job did not end within five waits")


def assert_planned(final: dict[str, Any], progress: list[Any]) -> None:
    """A done job: the AgentOutput as structured content, the short text, progress with phases and tokens."""
    assert final["state"] == JobState.DONE, final
    output = final["output"]
    assert output["decision"] in set(Decision) and output["plan"]
    text = final["text"]
    assert f"decision: {output['decision']}, confidence {output['confidence']:.2f}" in text
    for step in output["plan"]:
        assert f"{step['step']}. {step['title']}" in text
    messages = [m for _, _, m in progress]
    assert any(m and m.startswith("PLAN") and "tokens" in m for m in messages), messages
    done = [d for d, _, _ in progress]
    assert done == sorted(set(done)), "progress must grow with every notification"


def test_over_http_an_agent_lists_submits_follows_progress_and_reads_the_plan(dep: Deployment) -> None:
    agent_id, key = dep.agent()
    final = asyncio.run(_lists_submits_follows(dep, key, agent_id))
    rest = call(f"{dep.url}/v1/jobs/{final['job_id']}", token=key)  # the same status object as REST's
    assert rest.status == 200
    assert rest.body == {k: v for k, v in final.items() if k not in ("hint", "text")}
    assert key not in dep.logged()


async def _lists_submits_follows(dep: Deployment, key: str, agent_id: str) -> dict[str, Any]:
    async with http_session(dep, key) as session:
        listed = (await session.list_tools()).tools
        names = {tool.name for tool in listed}
        assert names == JOB_TOOLS  # an agent's token sees no review tools
        by_name = {spec.name: spec for spec in TOOLS}
        for tool in listed:
            assert tool.output_schema == by_name[tool.name].output.model_json_schema()
            assert tool.input_schema == by_name[tool.name].input.model_json_schema()

        final, progress = await submit_and_wait(
            session, description="Plan the MCP check", model="scripted-slow", idempotency_key="mcp-http-1"
        )
        too_long = await session.call_tool("wait_for_job", {"job_id": final["job_id"], "timeout_s": 61})
        assert too_long.is_error and text_of(too_long).startswith("bad_request: ")

        assert_planned(final, progress)
        assert final["agent_id"] == agent_id
        again = await session.call_tool(
            "submit_plan", {"description": "Plan the MCP check", "model": "scripted-slow",
                            "idempotency_key": "mcp-http-1"},
        )  # fmt: skip
        assert again.structured_content is not None and again.structured_content["job_id"] == final["job_id"]
        mine = await session.call_tool("list_my_jobs", {})
        assert mine.structured_content is not None
        assert [j["job_id"] for j in mine.structured_content["jobs"]] == [final["job_id"]]
    return final


def test_another_tenants_token_cannot_see_or_touch_a_job_over_either_transport(dep: Deployment) -> None:
    _, key = dep.agent(dep.tenant())
    _, other_key = dep.agent(dep.tenant())
    asyncio.run(_refused_across_tenants(dep, key, other_key))


async def _refused_across_tenants(dep: Deployment, key: str, other_key: str) -> None:
    async with http_session(dep, key) as session:
        submitted = await session.call_tool("submit_plan", {"description": "Plan the private thing"})
        assert submitted.structured_content is not None
        job_id = submitted.structured_content["job_id"]
    unknown_id = "0" * len(job_id)

    async def refusals(session: ClientSession) -> None:
        for tool in ("get_job", "wait_for_job", "cancel_job"):
            args = {"job_id": job_id} | ({"timeout_s": 1} if tool == "wait_for_job" else {})
            refused = await session.call_tool(tool, args)
            unknown = await session.call_tool(tool, args | {"job_id": unknown_id})
            assert refused.is_error and unknown.is_error
            assert refused.structured_content is None
            # the same answer as for a job that does not exist: nothing about whose it is
            assert text_of(refused) == text_of(unknown).replace(unknown_id, job_id)
            assert text_of(refused).startswith("not_found: ")
        listed = await session.call_tool("list_my_jobs", {})
        assert listed.structured_content is not None
        assert job_id not in {j["job_id"] for j in listed.structured_content["jobs"]}
        forged = await session.call_tool("submit_plan", {"description": "x", "tenant_id": "default"})
        assert forged.is_error and text_of(forged).startswith("forbidden: ")

    async with http_session(dep, other_key) as session:
        await refusals(session)
    async with stdio_session(dep, {"PLANGATE_API_URL": dep.url, "PLANGATE_TOKEN": other_key}) as session:
        await refusals(session)
    async with stdio_session(dep, {"PLANGATE_TOKEN": other_key}) as session:  # on Redis, as that token
        await refusals(session)


def test_mcp_over_http_needs_a_valid_token_and_stays_out_of_the_openapi_document(dep: Deployment) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    for token in (None, "not-a-token"):
        answer = call(dep.url + "/mcp", "POST", token=token, body=hello, headers=headers)
        assert answer.status == 401, answer.body
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.headers["www-authenticate"] == "Bearer"
    _, key = dep.agent()
    cross = call(
        dep.url + "/mcp", "POST", token=key, body=hello, headers={**headers, "Origin": "http://evil.test"}
    )
    assert cross.status == 403 and cross.body["code"] == "forbidden"
    listed = call(dep.url + "/mcp", "POST", token=key, body=hello, headers=headers)
    assert listed.status == 200 and "submit_plan" in listed.body
    for settings in ({"api_url": dep.url, "token": "not-a-token"}, {"token": "not-a-token"}):
        refused = dep.cli("mcp", **settings)  # plangate mcp says so at start, in one line
        assert refused.returncode == 2 and refused.stdout == "", refused
        assert refused.stderr.count("\n") == 1 and "token" in refused.stderr, refused.stderr
    metrics = call(dep.url + "/metrics").body  # counted as one route, like every other
    assert 'route="/mcp",status="401"' in metrics and 'route="/mcp",status="200"' in metrics
    spec = call(dep.url + "/openapi.json").body
    assert not any(path.startswith("/mcp") for path in spec["paths"])


def test_over_stdio_to_the_api_and_on_redis_an_agent_submits_and_waits(dep: Deployment) -> None:
    agent_id, key = dep.agent()
    asyncio.run(_over_stdio(dep, key, agent_id))


async def _over_stdio(dep: Deployment, key: str, agent_id: str) -> None:
    for env in ({"PLANGATE_API_URL": dep.url, "PLANGATE_TOKEN": key}, {"PLANGATE_TOKEN": key}):
        async with stdio_session(dep, env) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert JOB_TOOLS <= names
            final, progress = await submit_and_wait(
                session, description="Plan over stdio", model="scripted-slow"
            )
            assert_planned(final, progress)
            assert final["agent_id"] == agent_id
    # trusted local use: the Redis URL and no token, as an operator's CLI; the agent's key rides along
    async with stdio_session(dep, {"PLANGATE_AGENT_KEY": key}) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == JOB_TOOLS
        final, progress = await submit_and_wait(session, agent_id=agent_id, description="Plan locally")
        assert final["state"] == JobState.DONE and final["agent_id"] == agent_id
        mine = await session.call_tool("list_my_jobs", {"tenant_id": "default", "agent_id": agent_id})
        assert mine.structured_content is not None and len(mine.structured_content["jobs"]) == 3


def test_a_reviewer_token_lists_and_approves_an_escalated_plan(dep: Deployment) -> None:
    tenant = dep.tenant()
    _, key = dep.agent(tenant)
    reviewer_key = dep.out("reviewers", "add", f"rev-{tenant}", "--tenant", tenant).split()[-1]
    asyncio.run(_reviewed(dep, key, reviewer_key))


async def _reviewed(dep: Deployment, key: str, reviewer_key: str) -> None:
    async with http_session(dep, key) as session:
        final, _ = await submit_and_wait(
            session, description="Plan something doubtful", model="scripted-low-confidence"
        )
    assert final["output"]["decision"] == Decision.ESCALATE
    job_id = final["job_id"]
    async with http_session(dep, reviewer_key) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert REVIEW_TOOLS <= names and "submit_plan" not in names
        pending = await session.call_tool("list_reviews", {})
        assert pending.structured_content is not None
        assert [j["job_id"] for j in pending.structured_content["jobs"]] == [job_id]
        approved = await session.call_tool("approve_plan", {"job_id": job_id, "note": "fine by me"})
        assert not approved.is_error, text_of(approved)
        assert approved.structured_content is not None
        assert approved.structured_content["review"]["decision"] == "approved"
        assert re.search(r"review: approved by rev-", text_of(approved))
        twice = await session.call_tool("reject_plan", {"job_id": job_id})
        assert twice.is_error and text_of(twice).startswith("conflict: ")
    async with http_session(dep, key) as session:  # an agent's token is no reviewer's
        refused = await session.call_tool("list_reviews", {})
        assert refused.is_error and text_of(refused).startswith("forbidden: ")


def test_a_revoked_token_stops_at_once_over_both_transports(dep: Deployment) -> None:
    agent_id, key = dep.agent()
    asyncio.run(_revoked(dep, agent_id, key))


async def _revoked(dep: Deployment, agent_id: str, key: str) -> None:
    async with (
        http_session(dep, key) as over_http,
        stdio_session(dep, {"PLANGATE_TOKEN": key}) as on_redis,
    ):
        for session in (over_http, on_redis):
            assert not (await session.call_tool("list_my_jobs", {})).is_error
        revoked = await asyncio.to_thread(dep.cli, "tokens", "revoke", f"agent:{agent_id}")
        assert revoked.returncode == 0, revoked.stderr
        refused = await on_redis.call_tool("list_my_jobs", {})
        assert refused.is_error and text_of(refused) == "unauthenticated: unknown or revoked token"
        with pytest.raises(MCPError):  # the POST is answered 401 before MCP sees it
            await over_http.call_tool("list_my_jobs", {})
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    answer = await asyncio.to_thread(call, dep.url + "/mcp", "POST", token=key, body=hello, headers=headers)
    assert answer.status == 401 and answer.body["code"] == "unauthenticated"


def test_many_bounded_waits_with_progress_over_stdio_leave_no_reader_in_the_way(dep: Deployment) -> None:
    _, key = dep.agent()
    asyncio.run(_bounded_waits(dep, key))


async def _bounded_waits(dep: Deployment, key: str) -> None:
    async with stdio_session(dep, {"PLANGATE_API_URL": dep.url, "PLANGATE_TOKEN": key}) as session:
        submitted = await session.call_tool(
            "submit_plan", {"description": "Plan slowly", "model": "scripted-stall"}
        )
        assert submitted.structured_content is not None
        job_id = submitted.structured_content["job_id"]
        seen: list[str | None] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            seen.append(message)

        # more bounded waits than the event loop's default executor has threads: each one's event reader
        # is left behind when it times out, and must not block the next call (the job stalls for 30 s)
        for _ in range(10):
            waited = await session.call_tool(
                "wait_for_job", {"job_id": job_id, "timeout_s": 0.3}, progress_callback=on_progress
            )
            assert waited.structured_content is not None, text_of(waited)
            assert waited.structured_content["state"] in (JobState.QUEUED, JobState.RUNNING)
            assert waited.structured_content["hint"] is not None
        assert seen, "no progress notification"
        cancelled = await session.call_tool("cancel_job", {"job_id": job_id})
        assert not cancelled.is_error and cancelled.structured_content is not None
        assert cancelled.structured_content["state"] in (JobState.CANCELLED, JobState.RUNNING)
