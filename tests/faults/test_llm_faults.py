"""Every LLM fault the scripted endpoint can stage, through the real client over loopback: each ends
in a draft (a retry or a fallback mode worked) or in one specific typed `LLMError`; nothing else escapes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from governance.models import SEED_AGENT, PlanRequest
from worker import errors
from worker.errors import (
    InvalidOutput,
    LLMAnswerTooLarge,
    LLMError,
    LLMOutOfCredits,
    LLMRateLimited,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from worker.llm.planner import LLMPlanner, LLMResult
from worker.llm_stub.server import BEHAVIOURS, StubServer
from worker.settings import Settings

REQUEST = PlanRequest(agent_id="llm-planner-001", description="Rotate the backup keys, then verify a restore")
CLOSED_PORT = "connect-error"  # not a stub behaviour: the base URL points at a port nobody listens on
# Behaviours that are not faults: they answer a plan (slow, or one governance should flag).
NOT_FAULTS = {
    "scripted",
    "scripted-slow",
    "scripted-low-confidence",
    "scripted-forbidden-step",
    "scripted-hostile-actions",
    "scripted-fallback",
}

# model -> (expected outcome, words the error message must contain), with one retry allowed.
WITH_RETRY: dict[str, tuple[type[LLMResult] | type[LLMError], str]] = {
    "scripted-429": (LLMResult, ""),  # waits out Retry-After: 1, then answers
    "scripted-500": (
        LLMUnavailable,
        "HTTP 500 from LLM endpoint for model scripted-500: scripted failure; gave up after 2 attempts",
    ),
    "scripted-402": (
        LLMOutOfCredits,
        "HTTP 402 from LLM endpoint for model scripted-402: Insufficient credits",
    ),
    "scripted-cut": (LLMResult, ""),
    "scripted-midstream-error": (LLMResult, ""),
    "scripted-invalid-json": (InvalidOutput, "Invalid JSON"),
    "scripted-schema-invalid": (InvalidOutput, "confidence"),
    "scripted-empty": (InvalidOutput, "the answer was empty"),
    "scripted-stall": (LLMTimeout, "LLM stream idle for more than 0.3s (model scripted-stall)"),
    "scripted-no-json-schema": (LLMResult, ""),
    "scripted-huge-line": (LLMAnswerTooLarge, "LLM stream sent a line longer than LLM_MAX_LINE_BYTES="),
    "scripted-endless": (LLMAnswerTooLarge, "LLM answer passed LLM_MAX_ANSWER_BYTES="),
    "scripted-not-http": (LLMUnavailable, "LLM endpoint's answer is not valid HTTP: Bad status line"),
    CLOSED_PORT: (LLMUnavailable, "LLM endpoint unreachable"),
}
# The transient faults again, with no retry allowed: each must fail typed, naming its cause.
WITHOUT_RETRY: dict[str, tuple[type[LLMError], str]] = {
    "scripted-429": (LLMRateLimited, "HTTP 429"),
    "scripted-cut": (LLMStreamError, "LLM stream cut before it finished"),
    "scripted-midstream-error": (LLMStreamError, "LLM stream reported an error"),
    "scripted-stall": (LLMTimeout, "idle for more than 0.3s"),
    "scripted-500": (LLMUnavailable, "; gave up after 1 attempt"),
}


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer(stall_seconds=30.0) as server:
        yield server


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def _outcome(
    stub: StubServer, model: str, retries: int, base_url: str | None = None, timeout_s: float = 5.0
) -> LLMResult | LLMError:
    """What `LLMPlanner.plan` ends in; any exception that is not a typed LLMError fails the test."""
    if base_url is None:
        base_url = _closed_port_url() if model == CLOSED_PORT else stub.base_url
    settings = Settings(
        llm_base_url=base_url,
        llm_api_key="sk-faults-never-logged",  # type: ignore[arg-type]
        llm_max_retries=retries,
        llm_backoff_s=0.01,
        llm_idle_timeout_s=0.3,
        llm_timeout_s=timeout_s,
    )
    planner = LLMPlanner(settings)
    try:
        return await planner.plan(agent=SEED_AGENT, request=REQUEST, model=model, on_tokens=lambda _n: None)
    except LLMError as exc:
        return exc
    finally:
        await planner.aclose()


def _check(outcome: LLMResult | LLMError, expected: type[LLMResult] | type[LLMError], words: str) -> None:
    assert type(outcome) is expected, f"expected {expected.__name__}, got {type(outcome).__name__}: {outcome}"
    if isinstance(outcome, LLMResult):
        assert outcome.draft.plan
        return
    assert isinstance(outcome, LLMError) and type(outcome).__module__ == errors.__name__
    assert outcome.code == expected.code and outcome.code != LLMError.code
    assert words in str(outcome)
    assert "sk-faults-never-logged" not in str(outcome)


def test_the_table_covers_every_fault_behaviour() -> None:
    assert set(WITH_RETRY) - {CLOSED_PORT} == set(BEHAVIOURS) - NOT_FAULTS


@pytest.mark.parametrize("model", list(WITH_RETRY))
async def test_fault_with_one_retry(stub: StubServer, model: str) -> None:
    expected, words = WITH_RETRY[model]
    _check(await _outcome(stub, model, retries=1), expected, words)


@pytest.mark.parametrize("model", list(WITHOUT_RETRY))
async def test_transient_fault_without_retry_names_its_cause(stub: StubServer, model: str) -> None:
    expected, words = WITHOUT_RETRY[model]
    outcome = await _outcome(stub, model, retries=0)
    _check(outcome, expected, words)
    assert expected.retryable and len(stub.requests) == 1


async def test_endpoint_that_never_answers_times_out_on_the_idle_timeout(stub: StubServer) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # read the request and never answer, until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        outcome = await _outcome(stub, "scripted", retries=1, base_url=base_url)
    finally:
        server.close()
        await server.wait_closed()
    _check(outcome, LLMTimeout, "sent no response within 0.3s (model scripted); gave up after 2 attempts")


async def test_connect_that_hangs_times_out_on_the_connect_timeout(stub: StubServer) -> None:
    # A listening socket that never accepts, its backlog filled by one connection: Linux drops
    # further SYNs, so connecting hangs until the client's connect timeout, min(10 s, LLM_TIMEOUT_S).
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        outcome = await _outcome(
            stub, "scripted", retries=1, base_url=f"http://127.0.0.1:{port}/v1", timeout_s=0.4
        )
    _check(outcome, LLMTimeout, "could not connect to the LLM endpoint within 0.4s; gave up after 2 attempts")
