"""LLMPlanner against the scripted endpoint over loopback, one behaviour at a time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from governance.models import SEED_AGENT, PlanRequest
from tests.eventually import eventually
from worker.errors import (
    InvalidOutput,
    LLMAnswerTooLarge,
    LLMOutOfCredits,
    LLMRequestRejected,
    LLMTimeout,
    LLMUnavailable,
)
from worker.llm.modes import request_options
from worker.llm.planner import LLMPlanner, LLMResult, models_to_try, parse_draft
from worker.llm.transport import client_timeout
from worker.llm_stub.server import StubServer
from worker.prompt import build_messages
from worker.settings import Settings

REQUEST = PlanRequest(
    agent_id="llm-planner-001",
    description="Move the build cache to the new volume, then prune old artefacts",
    constraints=["read-only"],
)


@pytest.fixture(autouse=True, params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every behaviour holds on both HTTP transports of the openai client (LLM_HTTP)."""
    monkeypatch.setenv("PLANGATE_LLM_HTTP", request.param)
    return str(request.param)


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer(slow_seconds=5.0, stall_seconds=30.0) as server:
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
        return await _plan_with(planner, model, counts)
    finally:
        await planner.aclose()


async def _plan_with(planner: LLMPlanner, model: str, counts: list[int] | None = None) -> LLMResult:
    return await planner.plan(
        agent=SEED_AGENT,
        request=REQUEST,
        model=model,
        on_tokens=(counts if counts is not None else []).append,
    )


async def test_scripted_gives_a_valid_draft_with_real_usage(stub: StubServer) -> None:
    counts: list[int] = []
    result = await _plan(stub.base_url, "vendor/scripted", counts)
    assert result.draft.confidence == 0.9
    assert any("Move the build cache" in step.title for step in result.draft.plan)
    assert result.model == "vendor/scripted"
    assert result.response_mode == "json_schema"
    assert result.attempts == 1
    assert result.usage.estimated is False
    assert result.usage.completion_tokens == 40
    assert counts == list(range(1, 41))
    sent = stub.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["title"] == "PlanDraft"
    assert sent["max_tokens"] == 2048
    assert sent["messages"] == build_messages(SEED_AGENT, REQUEST)  # (sent through extra_body)
    assert set(sent) == {"model", "messages", "stream", "stream_options", "max_tokens", "response_format"}
    assert "x-title" not in stub.request_headers[0]  # attribution headers are for OpenRouter only


async def test_the_request_skips_the_sdks_per_request_parameter_transform(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create()'s transform of its parameters cost ~0.2 ms of a worker's CPU per job (bench/README.md):
    # the request is posted with a plain body, the same on the wire.
    from openai.resources.chat.completions import completions

    async def no_transform(*args: object, **kwargs: object) -> object:
        raise AssertionError("the typed-parameter transform ran")

    monkeypatch.setattr(completions, "async_maybe_transform", no_transform)
    result = await _plan(stub.base_url, "vendor/scripted")
    assert result.draft.confidence == 0.9
    assert stub.requests[0]["messages"] == build_messages(SEED_AGENT, REQUEST)


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


async def test_connection_closed_without_an_answer_is_unavailable_not_a_timeout() -> None:
    """An endpoint that reads the request and hangs up (aiohttp reports that as a timeout; it is not)."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(LLMUnavailable, match="after 2 attempts"):
            await _plan(f"http://127.0.0.1:{port}/v1", "scripted", llm_max_retries=1)


async def _raw_server(answer: bytes | None) -> asyncio.Server:
    """A port that does not speak HTTP: it hangs up at once (None), or reads the request and answers
    `answer` (bytes that are not an HTTP response), then hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if answer is None:
            writer.transport.abort()
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (None, "unreachable"),
        (b"\x00\x01 not an HTTP response\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "not valid HTTP"),
    ],
    ids=["closes-at-once", "garbage", "bad-status-line"],
)
async def test_a_port_that_does_not_answer_http_is_unavailable(answer: bytes | None, words: str) -> None:
    server = await _raw_server(answer)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(LLMUnavailable, match=rf"{words}.*after 2 attempts"):
            await _plan(f"http://127.0.0.1:{port}/v1", "scripted", llm_max_retries=1)


async def test_the_stubs_not_http_answer_is_unavailable(stub: StubServer) -> None:
    with pytest.raises(LLMUnavailable, match=r"not valid HTTP: .*after 2 attempts"):
        await _plan(stub.base_url, "scripted-not-http", llm_max_retries=1)
    assert len(stub.requests) == 2


async def test_a_huge_line_ends_the_call_at_the_line_cap_without_retry(stub: StubServer) -> None:
    with pytest.raises(LLMAnswerTooLarge) as caught:
        await _plan(stub.base_url, "scripted-huge-line", llm_max_retries=3)
    assert str(caught.value) == (
        "LLM stream sent a line longer than LLM_MAX_LINE_BYTES=4194304 (model scripted-huge-line)"
    )
    assert caught.value.code == "llm_answer_too_large" and not caught.value.retryable
    assert len(stub.requests) == 1  # not retried on the same model
    # The client hung up mid-line (the stub's line is 64 MiB) and the stub noticed.
    await eventually(lambda: stub.open_streams == 0, timeout_s=5, what="the stream to close")
    assert stub.abandoned_streams == 1


async def test_an_endless_stream_ends_the_call_at_the_answer_cap(stub: StubServer) -> None:
    counts: list[int] = []
    with pytest.raises(LLMAnswerTooLarge, match=r"passed LLM_MAX_ANSWER_BYTES=2097152 before the model"):
        await _plan(stub.base_url, "scripted-endless", counts, llm_max_answer_bytes=2 * 1024 * 1024)
    assert len(stub.requests) == 1
    assert counts and counts == sorted(counts)  # it streamed content until the cap
    await eventually(lambda: stub.open_streams == 0, timeout_s=5, what="the stream to close")
    assert stub.abandoned_streams == 1


async def test_an_answer_past_a_cap_falls_back_to_the_next_model(stub: StubServer) -> None:
    result = await _plan(stub.base_url, "scripted-huge-line", fallback_models=["scripted"])
    assert result.model == "scripted" and result.draft.plan
    assert [r["model"] for r in stub.requests] == ["scripted-huge-line", "scripted"]


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
    planner = LLMPlanner(_settings(stub.base_url, llm_max_retries=0))
    try:
        first = await _plan_with(planner, "scripted-no-json-schema")
        assert first.response_mode == "json_object" and first.attempts == 2
        assert [r["response_format"]["type"] for r in stub.requests] == ["json_schema", "json_object"]
        second = await _plan_with(planner, "scripted-no-json-schema")
        assert second.response_mode == "json_object" and second.attempts == 1
        assert stub.requests[2]["response_format"] == {"type": "json_object"}
    finally:
        await planner.aclose()
    # The memory is the planner's: a new one (another worker process) asks for json_schema again.
    third = await _plan(stub.base_url, "scripted-no-json-schema", llm_max_retries=0)
    assert third.response_mode == "json_object" and third.attempts == 2
    assert stub.requests[3]["response_format"]["type"] == "json_schema"


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


async def test_stalled_stream_times_out_per_chunk_after_bounded_retries(stub: StubServer) -> None:
    idle, retries = 0.3, 2
    started = time.monotonic()
    with pytest.raises(LLMTimeout, match=r"idle for more than 0\.3s .*gave up after 3 attempts") as caught:
        await _plan(stub.base_url, "scripted-stall", llm_idle_timeout_s=idle, llm_max_retries=retries)
    elapsed = time.monotonic() - started
    # Each attempt waits one idle period, not the stub's 30 s stall nor LLM_TIMEOUT_S (10 s).
    assert (retries + 1) * idle * 0.9 <= elapsed < (retries + 1) * idle + 2.0
    assert caught.value.code == "llm_timeout" and caught.value.retryable
    assert len(stub.requests) == retries + 1
    # The client hung up each time and the stub's handler noticed: nothing is left stalling.
    await eventually(lambda: stub.open_streams == 0, timeout_s=5, what="the stream to close")
    assert stub.abandoned_streams == retries + 1


async def test_idle_timeout_is_between_chunks_not_for_the_whole_stream() -> None:
    # Ten chunks over about 1 s (keep-alive comment lines between them) against a 0.5 s idle timeout.
    async with StubServer(slow_seconds=1.0, chunks=10) as slow:
        started = time.monotonic()
        result = await _plan(slow.base_url, "scripted-slow", llm_idle_timeout_s=0.5, llm_max_retries=0)
    assert time.monotonic() - started >= 1.0 and result.attempts == 1


def test_client_timeout_reads_the_idle_setting_and_bounds_connect() -> None:
    timeout = client_timeout(_settings("http://127.0.0.1:9/v1", llm_timeout_s=60.0, llm_idle_timeout_s=2.0))
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (10.0, 2.0, 60.0, 60.0)
    assert client_timeout(_settings("http://127.0.0.1:9/v1", llm_timeout_s=3.0)).connect == 3.0


async def test_empty_answer_fails_naming_empty_after_the_repair_round(stub: StubServer) -> None:
    with pytest.raises(InvalidOutput, match=r"after the repair round .*the answer was empty"):
        await _plan(stub.base_url, "scripted-empty")
    assert len(stub.requests) == 2
    assert "the answer was empty" in stub.requests[1]["messages"][-1]["content"]


async def test_schema_invalid_answer_sends_the_validation_error_for_repair(stub: StubServer) -> None:
    with pytest.raises(InvalidOutput, match="confidence") as caught:
        await _plan(stub.base_url, "scripted-schema-invalid")
    assert "decision" in str(caught.value)
    assert len(stub.requests) == 2
    feedback = stub.requests[1]["messages"][-1]["content"]
    assert "confidence" in feedback and "less than or equal to 1" in feedback
    assert "decision" in feedback and "Field required" in feedback


async def test_fallback_model_answers_when_the_primary_stays_down(stub: StubServer) -> None:
    with capture_logs() as logs:
        result = await _plan(stub.base_url, "scripted-500", llm_max_retries=1, fallback_models=["scripted"])
    assert result.model == "scripted" and result.draft.plan
    assert [r["model"] for r in stub.requests] == ["scripted-500", "scripted-500", "scripted"]
    assert result.attempts == 3
    fallbacks = [entry for entry in logs if entry["event"] == "llm.fallback"]
    assert [(f["failed"], f["next"], f["error"]) for f in fallbacks] == [
        ("scripted-500", "scripted", "llm_unavailable")
    ]


async def test_all_models_failing_names_every_model_tried(stub: StubServer) -> None:
    fallbacks = ["vendor/scripted-500", "scripted-402"]
    with pytest.raises(LLMOutOfCredits) as caught:
        await _plan(stub.base_url, "scripted-500", llm_max_retries=1, fallback_models=fallbacks)
    message = str(caught.value)
    assert "HTTP 402" in message
    assert message.endswith("models tried: scripted-500, vendor/scripted-500, scripted-402")
    assert [r["model"] for r in stub.requests] == ["scripted-500"] * 2 + ["vendor/scripted-500"] * 2 + [
        "scripted-402"
    ]


async def test_last_fallback_failing_keeps_its_type_and_gave_up_cause(stub: StubServer) -> None:
    with pytest.raises(
        LLMUnavailable, match=r"HTTP 500 .*gave up after 2 attempts; models tried: a/scripted-500"
    ):
        await _plan(stub.base_url, "a/scripted-500", llm_max_retries=1, fallback_models=["b/scripted-500"])
    assert len(stub.requests) == 4


async def test_invalid_output_and_out_of_credits_do_not_fall_back(stub: StubServer) -> None:
    for model in ("scripted-invalid-json", "scripted-402"):
        with pytest.raises((InvalidOutput, LLMOutOfCredits)) as caught:
            await _plan(stub.base_url, model, fallback_models=["scripted"])
        assert "models tried" not in str(caught.value)
    assert "scripted" not in {r["model"] for r in stub.requests}


async def test_rejected_request_falls_back(stub: StubServer) -> None:
    base_without_v1 = f"http://127.0.0.1:{stub.port}/api"
    with pytest.raises(LLMRequestRejected, match="models tried: scripted-x, scripted"):
        await _plan(base_without_v1, "scripted-x", fallback_models=["scripted", "scripted-x"])
    assert stub.paths == ["POST /api/chat/completions"] * 2


def test_models_to_try_keeps_order_without_repeats() -> None:
    assert models_to_try("a", ["b", "a", "c", "b"]) == ["a", "b", "c"]
    assert models_to_try("a", []) == ["a"]


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


async def test_the_chosen_transport_carries_the_call(stub: StubServer, transport: str) -> None:
    planner = LLMPlanner(_settings(f"http://127.0.0.1:{stub.port}/v1"))
    try:
        classes = [cls.__name__ for cls in type(planner._client._client).__mro__]
        assert ("Httpx2AiohttpClient" in classes) == (transport == "aiohttp")
        result = await planner.plan(agent=SEED_AGENT, request=REQUEST, model="scripted", on_tokens=[].append)
    finally:
        await planner.aclose()
    assert result.draft.action
