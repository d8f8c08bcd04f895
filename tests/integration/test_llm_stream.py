"""LLMPlanner against the scripted endpoint over loopback, one behaviour at a time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from structlog.testing import capture_logs

from governance.models import SEED_AGENT, PlanRequest
from worker import llm_stream
from worker.errors import InvalidOutput, LLMOutOfCredits, LLMRequestRejected, LLMUnavailable
from worker.llm_stream import LLMPlanner, LLMResult, parse_draft, request_options
from worker.llm_stub import StubServer
from worker.settings import Settings

REQUEST = PlanRequest(
    agent_id="llm-planner-001",
    description="Move the build cache to the new volume, then prune old artefacts",
    constraints=["read-only"],
)


@pytest.fixture(autouse=True)
def _fresh_modes() -> Iterator[None]:
    llm_stream.forget_response_modes()
    yield
    llm_stream.forget_response_modes()


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer(slow_seconds=5.0) as server:
        yield server


def _settings(base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "llm_base_url": base_url,
        "llm_api_key": "sk-test-never-logged",
        "llm_backoff_s": 0.01,
        "llm_max_retries": 2,
        "llm_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def _plan(base_url: str, model: str, counts: list[int] | None = None, **overrides: object) -> LLMResult:
    planner = LLMPlanner(_settings(base_url, **overrides))
    try:
        return await planner.plan(
            agent=SEED_AGENT,
            request=REQUEST,
            model=model,
            on_tokens=(counts if counts is not None else []).append,
        )
    finally:
        await planner.aclose()


async def test_scripted_gives_a_valid_draft_with_real_usage(stub: StubServer) -> None:
    counts: list[int] = []
    result = await _plan(stub.base_url, "vendor/scripted", counts)
    assert result.draft.confidence == 0.9
    assert any("Move the build cache" in step.title for step in result.draft.plan)
    assert result.model == "vendor/scripted"
    assert result.response_mode == "json_schema"
    assert result.attempts == 1
    assert result.usage["estimated"] is False
    assert result.usage["completion_tokens"] == 40
    assert counts == list(range(1, 41))
    sent = stub.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["title"] == "PlanDraft"
    assert sent["max_tokens"] == 2048
    assert "x-title" not in stub.request_headers[0]  # attribution headers are for OpenRouter only


async def test_429_retries_after_retry_after(stub: StubServer) -> None:
    started = time.monotonic()
    result = await _plan(stub.base_url, "scripted-429")
    assert time.monotonic() - started >= 1.0
    assert result.attempts == 2 and len(stub.requests) == 2


async def test_500_gives_up_after_bounded_retries(stub: StubServer) -> None:
    with pytest.raises(LLMUnavailable, match="after 3 attempts"):
        await _plan(stub.base_url, "scripted-500", llm_max_retries=2)
    assert len(stub.requests) == 3


async def test_402_out_of_credits_is_not_retried(stub: StubServer) -> None:
    with pytest.raises(LLMOutOfCredits):
        await _plan(stub.base_url, "scripted-402", llm_max_retries=3)
    assert len(stub.requests) == 1


async def test_the_model_that_answered_is_recorded(stub: StubServer) -> None:
    result = await _plan(stub.base_url, "scripted-fallback")
    assert stub.requests[-1]["model"] == "scripted-fallback"
    assert result.model == "scripted-fallback-backup"


async def test_connect_error_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LLMUnavailable, match="after 2 attempts"):
        await _plan(f"http://127.0.0.1:{port}/v1", "scripted", llm_max_retries=1)


async def test_other_4xx_is_rejected_without_retry(stub: StubServer) -> None:
    base_without_v1 = f"http://127.0.0.1:{stub.port}/api"
    with pytest.raises(LLMRequestRejected):
        await _plan(base_without_v1, "scripted", llm_max_retries=3)
    assert stub.paths == ["POST /api/chat/completions"]


@pytest.mark.parametrize("model", ["scripted-cut", "scripted-midstream-error"])
async def test_broken_stream_succeeds_on_retry(stub: StubServer, model: str) -> None:
    counts: list[int] = []
    result = await _plan(stub.base_url, model, counts)
    assert result.attempts == 2
    assert result.draft.plan
    assert counts == sorted(counts) and counts[-1] > 40  # progress keeps rising across the retry


async def test_invalid_json_fails_after_one_repair_round(stub: StubServer) -> None:
    with pytest.raises(InvalidOutput, match="after the repair round"):
        await _plan(stub.base_url, "scripted-invalid-json")
    assert len(stub.requests) == 2
    repair = stub.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"].startswith("Sure!")
    assert repair[-1]["role"] == "user" and "Invalid JSON" in repair[-1]["content"]


async def test_no_json_schema_falls_back_and_remembers(stub: StubServer) -> None:
    first = await _plan(stub.base_url, "scripted-no-json-schema", llm_max_retries=0)
    assert first.response_mode == "json_object" and first.attempts == 2
    assert [r["response_format"]["type"] for r in stub.requests] == ["json_schema", "json_object"]
    second = await _plan(stub.base_url, "scripted-no-json-schema")
    assert second.response_mode == "json_object" and second.attempts == 1
    assert stub.requests[2]["response_format"] == {"type": "json_object"}


async def test_low_confidence_and_forbidden_step(stub: StubServer) -> None:
    assert (await _plan(stub.base_url, "scripted-low-confidence")).draft.confidence == 0.3
    draft = (await _plan(stub.base_url, "scripted-forbidden-step")).draft
    assert any(step.actions == ["run_terraform"] for step in draft.plan)


async def test_cancel_mid_stream_is_prompt(stub: StubServer) -> None:
    streaming = asyncio.Event()
    planner = LLMPlanner(_settings(stub.base_url))
    try:
        task = asyncio.create_task(
            planner.plan(
                agent=SEED_AGENT, request=REQUEST, model="scripted-slow", on_tokens=lambda _n: streaming.set()
            )
        )
        await asyncio.wait_for(streaming.wait(), timeout=5)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled_at < 1.0
    finally:
        await planner.aclose()


async def test_retries_are_logged_without_the_key(stub: StubServer) -> None:
    with capture_logs() as logs, pytest.raises(LLMUnavailable):
        await _plan(stub.base_url, "scripted-500", llm_max_retries=1)
    retries = [entry for entry in logs if entry["event"] == "llm.retry"]
    assert len(retries) == 1 and retries[0]["error"] == "llm_unavailable" and retries[0]["attempt"] == 1
    assert "sk-test-never-logged" not in repr(logs)


def test_openrouter_gets_attribution_and_require_parameters() -> None:
    schema = request_options("https://openrouter.ai/api/v1", "json_schema")
    assert schema["extra_body"] == {"provider": {"require_parameters": True}}
    assert schema["extra_headers"]["X-Title"] == "plangate" and "HTTP-Referer" in schema["extra_headers"]
    assert "extra_body" not in request_options("https://openrouter.ai/api/v1", "json_object")
    assert request_options("http://127.0.0.1:9/v1", "prompt") == {}


def test_parse_draft_strips_code_fences() -> None:
    body = '{"action": "a", "decision": "SKIP", "confidence": 0.5, "plan": []}'
    assert parse_draft(f"```json\n{body}\n```").decision == "SKIP"
    assert parse_draft(body).confidence == 0.5
