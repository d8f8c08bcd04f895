"""The scripted endpoint over loopback: through the openai SDK and through raw HTTP/1.1 (with a Host header,
as HTTP/1.1 requires and the endpoint's HTTP server enforces)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from pydantic import ValidationError

from governance.models import PlanDraft
from tests.eventually import eventually
from worker.llm_stub.server import BEHAVIOURS, STALL_AFTER_CHUNKS, StubServer, split_content

USER = json.dumps(
    {"task_type": "plan", "description": "Rotate the TLS certificates, then restart the proxies"}
)
MESSAGES = [{"role": "system", "content": "plan"}, {"role": "user", "content": USER}]


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer(slow_seconds=0.3) as server:
        yield server


@pytest.fixture
async def client(stub: StubServer) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0, timeout=10)
    yield sdk
    await sdk.close()


async def _raw(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, *, reader_writer: Any = None
) -> tuple[int, dict[str, str], bytes, bool]:
    """One request over a raw socket: (status, headers, body, whether the body ended properly)."""
    reader, writer = reader_writer or await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    )
    await writer.drain()
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().strip().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    status = int(status_line.split()[1])
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"])), True
    parts = []
    try:
        while True:
            size = int(await reader.readuntil(b"\r\n"), 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                return status, headers, b"".join(parts), True
    except asyncio.IncompleteReadError:
        return status, headers, b"".join(parts), False
    finally:
        if reader_writer is None:
            writer.close()


def _events(body: bytes) -> list[str]:
    return [line[len("data: ") :] for line in body.decode().split("\n") if line.startswith("data: ")]


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, **extra}


async def test_models_lists_every_behaviour(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == list(BEHAVIOURS)


async def test_non_streaming_answer_is_a_valid_plan_with_usage(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(model="vendor/scripted", messages=MESSAGES)  # type: ignore[arg-type]
    content = response.choices[0].message.content or ""
    draft = PlanDraft.model_validate_json(content)
    assert draft.decision == "EXECUTE" and draft.confidence == 0.9
    assert [s.step for s in draft.plan] == list(range(1, len(draft.plan) + 1))
    assert any("Rotate the TLS certificates" in s.title for s in draft.plan)
    assert response.model == "vendor/scripted"
    assert response.usage is not None
    assert response.usage.completion_tokens == len(split_content(content, 40))
    assert response.usage.prompt_tokens == sum(len(m["content"]) for m in MESSAGES) // 4


async def test_streaming_sends_deltas_finish_usage_and_done(
    client: openai.AsyncOpenAI, stub: StubServer
) -> None:
    stream = await client.chat.completions.create(
        model="vendor/scripted",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 40
    assert {c.model for c in chunks} == {"vendor/scripted"}
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 40
    PlanDraft.model_validate_json("".join(c.choices[0].delta.content or "" for c in content_chunks))
    assert stub.requests[-1]["stream_options"] == {"include_usage": True}


async def test_chunk_count_is_a_constructor_setting() -> None:
    async with StubServer(chunks=7) as small:
        status, _headers, body, complete = await _raw(
            small.port, "POST", "/v1/chat/completions", _chat("scripted", stream=True)
        )
    events = _events(body)
    assert status == 200 and complete and events[-1] == "[DONE]"
    deltas = [
        json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1] if json.loads(e)["choices"]
    ]
    assert len([d for d in deltas if d]) == 7
    assert "usage" not in json.loads(events[-2])  # no include_usage asked, no usage chunk


async def test_different_requests_give_different_plans(client: openai.AsyncOpenAI) -> None:
    titles = []
    for text in ("Audit the firewall rules", "Plan the database upgrade and check the replicas"):
        messages = [{"role": "user", "content": json.dumps({"description": text})}]
        response = await client.chat.completions.create(model="scripted", messages=messages)  # type: ignore[arg-type]
        titles.append(
            [s.title for s in PlanDraft.model_validate_json(response.choices[0].message.content or "").plan]
        )
    assert titles[0] != titles[1]
    assert "Plan: Audit the firewall rules" in titles[0]


async def test_unknown_path_is_404_in_openai_error_shape(stub: StubServer) -> None:
    status, headers, body, _ = await _raw(stub.port, "GET", "/v1/nope")
    assert status == 404 and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "code"}


async def test_keep_alive_reuses_one_connection(client: openai.AsyncOpenAI, stub: StubServer) -> None:
    for _ in range(2):
        stream = await client.chat.completions.create(
            model="scripted",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
        async for _chunk in stream:
            pass
        await client.chat.completions.create(model="scripted", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(stub.requests) == 4
    assert stub.connections == 1


async def test_raw_keep_alive_serves_two_requests_on_one_socket(stub: StubServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stub.port)
    try:
        first = await _raw(stub.port, "GET", "/v1/models", reader_writer=(reader, writer))
        second = await _raw(
            stub.port,
            "POST",
            "/v1/chat/completions",
            _chat("scripted", stream=True),
            reader_writer=(reader, writer),
        )
    finally:
        writer.close()
    assert first[0] == 200 and second[0] == 200 and second[3]
    assert stub.connections == 1


async def test_429_with_retry_after_then_success(stub: StubServer) -> None:
    status, headers, body, _ = await _raw(stub.port, "POST", "/v1/chat/completions", _chat("scripted-429"))
    assert status == 429 and headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == 429
    status, _headers, body, _ = await _raw(stub.port, "POST", "/v1/chat/completions", _chat("scripted-429"))
    assert status == 200
    PlanDraft.model_validate_json(json.loads(body)["choices"][0]["message"]["content"])


async def test_500_always(stub: StubServer) -> None:
    for _ in range(3):
        status, _headers, body, _ = await _raw(
            stub.port, "POST", "/v1/chat/completions", _chat("scripted-500")
        )
        assert status == 500 and "message" in json.loads(body)["error"]


async def test_cut_drops_the_first_stream_then_succeeds(stub: StubServer) -> None:
    request = _chat("scripted-cut", stream=True)
    status, _headers, body, complete = await _raw(stub.port, "POST", "/v1/chat/completions", request)
    assert status == 200 and not complete
    assert _events(body) and "[DONE]" not in _events(body)
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in _events(body))
    status, _headers, body, complete = await _raw(stub.port, "POST", "/v1/chat/completions", request)
    assert status == 200 and complete and _events(body)[-1] == "[DONE]"


async def test_invalid_json_behaviour_answers_prose(client: openai.AsyncOpenAI) -> None:
    for _ in range(2):
        response = await client.chat.completions.create(model="scripted-invalid-json", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.choices[0].message.content or "")


async def test_midstream_error_event_then_success(client: openai.AsyncOpenAI, stub: StubServer) -> None:
    status, _headers, body, complete = await _raw(
        stub.port, "POST", "/v1/chat/completions", _chat("scripted-midstream-error", stream=True)
    )
    events = [json.loads(e) for e in _events(body)]
    assert status == 200 and complete
    assert events[-1]["error"]["code"] == 502 and "[DONE]" not in _events(body)
    assert any(e["choices"][0]["delta"].get("content") for e in events[:-1])
    # The SDK surfaces the event as a plain APIError without a status code; the next request works.
    messages = [{"role": "user", "content": "another conversation"}]
    with pytest.raises(openai.APIError) as caught:
        stream = await client.chat.completions.create(
            model="scripted-midstream-error", messages=messages, stream=True
        )  # type: ignore[arg-type]
        async for _chunk in stream:
            pass
    assert not isinstance(caught.value, openai.APIStatusError)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == 502
    stream = await client.chat.completions.create(
        model="scripted-midstream-error", messages=messages, stream=True
    )  # type: ignore[arg-type]
    assert [c async for c in stream][-1].choices[0].finish_reason == "stop"


async def test_no_json_schema_rejects_only_json_schema(stub: StubServer) -> None:
    schema_format = {"type": "json_schema", "json_schema": {"name": "plan", "schema": {}}}
    status, _h, body, _ = await _raw(
        stub.port,
        "POST",
        "/v1/chat/completions",
        _chat("scripted-no-json-schema", response_format=schema_format),
    )
    assert status == 400
    assert (
        json.loads(body)["error"]["message"] == "response_format json_schema is not supported by this model"
    )
    for extra in ({"response_format": {"type": "json_object"}}, {}):
        status, _h, body, _ = await _raw(
            stub.port, "POST", "/v1/chat/completions", _chat("scripted-no-json-schema", **extra)
        )
        assert status == 200


async def test_low_confidence_and_forbidden_step_plans(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(model="scripted-low-confidence", messages=MESSAGES)  # type: ignore[arg-type]
    assert PlanDraft.model_validate_json(response.choices[0].message.content or "").confidence == 0.3
    response = await client.chat.completions.create(model="scripted-forbidden-step", messages=MESSAGES)  # type: ignore[arg-type]
    draft = PlanDraft.model_validate_json(response.choices[0].message.content or "")
    assert ["run_terraform"] in [s.actions for s in draft.plan]


async def test_slow_mode_sends_comment_lines_the_sdk_ignores(
    client: openai.AsyncOpenAI, stub: StubServer
) -> None:
    _status, _headers, body, complete = await _raw(
        stub.port, "POST", "/v1/chat/completions", _chat("scripted-slow", stream=True)
    )
    lines = body.decode().split("\n")
    assert complete
    assert ": OPENROUTER PROCESSING" in lines and ": keep-alive" in lines
    stream = await client.chat.completions.create(model="scripted-slow", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    PlanDraft.model_validate_json(text)


async def test_stall_goes_silent_after_a_few_chunks_then_finishes() -> None:
    async with StubServer(stall_seconds=0.4) as stalling:
        started = time.monotonic()
        status, _headers, body, complete = await _raw(
            stalling.port, "POST", "/v1/chat/completions", _chat("scripted-stall", stream=True)
        )
        elapsed = time.monotonic() - started
    assert status == 200 and complete and _events(body)[-1] == "[DONE]"
    assert elapsed >= 0.4
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in _events(body)[:-2])
    PlanDraft.model_validate_json(text)


async def test_stall_notices_the_client_hanging_up() -> None:
    async with StubServer(stall_seconds=30.0) as stalling:
        reader, writer = await asyncio.open_connection("127.0.0.1", stalling.port)
        data = json.dumps(_chat("scripted-stall", stream=True)).encode()
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
        writer.write(head.encode() + data)
        seen = b""
        while seen.count(b"data: ") < STALL_AFTER_CHUNKS:
            seen += await asyncio.wait_for(reader.read(65536), timeout=5)
        assert stalling.open_streams == 1
        writer.close()
        await writer.wait_closed()
        # Well before the 30 s stall ends, the handler has seen the hang-up and let go.
        await eventually(
            lambda: stalling.open_streams == 0 and stalling.abandoned_streams == 1,
            timeout_s=5,
            what="the abandoned stream to close",
        )


async def test_empty_answers_stop_without_content(client: openai.AsyncOpenAI, stub: StubServer) -> None:
    status, _headers, body, complete = await _raw(
        stub.port, "POST", "/v1/chat/completions", _chat("scripted-empty", stream=True)
    )
    events = [json.loads(e) for e in _events(body)[:-1]]
    assert status == 200 and complete and _events(body)[-1] == "[DONE]"
    assert [e["choices"][0]["finish_reason"] for e in events] == ["stop"]
    assert not any(e["choices"][0]["delta"].get("content") for e in events)
    response = await client.chat.completions.create(model="scripted-empty", messages=MESSAGES)  # type: ignore[arg-type]
    assert response.choices[0].message.content == "" and response.choices[0].finish_reason == "stop"


async def test_schema_invalid_is_json_but_not_a_plan(client: openai.AsyncOpenAI) -> None:
    for _ in range(2):
        response = await client.chat.completions.create(model="scripted-schema-invalid", messages=MESSAGES)  # type: ignore[arg-type]
        content = response.choices[0].message.content or ""
        assert json.loads(content)["confidence"] == 7
        with pytest.raises(ValidationError) as caught:
            PlanDraft.model_validate_json(content)
        assert {error["loc"][0] for error in caught.value.errors()} == {"confidence", "decision"}


async def test_huge_line_is_one_content_delta_of_the_configured_size() -> None:
    async with StubServer(huge_line_bytes=1024 * 1024) as huge:
        status, _headers, body, complete = await _raw(
            huge.port, "POST", "/v1/chat/completions", _chat("scripted-huge-line", stream=True)
        )
    line, *rest = _events(body)
    assert status == 200 and complete and rest[-1] == "[DONE]"
    assert len(line) > 1024 * 1024 and json.loads(line)["choices"][0]["delta"]["content"] == "x" * 1024 * 1024
    assert json.loads(rest[0])["choices"][0]["finish_reason"] == "stop"


async def test_endless_streams_deltas_until_the_client_hangs_up(stub: StubServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stub.port)
    data = json.dumps(_chat("scripted-endless", stream=True)).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data)
    seen = b""
    while len(seen) < 4 * 1024 * 1024:  # far more than the plan it repeats
        seen += await asyncio.wait_for(reader.read(65536), timeout=5)
    assert b'"finish_reason": "stop"' not in seen and seen.count(b'"content": ') > 1_000
    writer.close()
    await writer.wait_closed()
    await eventually(
        lambda: stub.open_streams == 0 and stub.abandoned_streams == 1,
        timeout_s=5,
        what="the abandoned stream to close",
    )


async def test_not_http_answers_a_banner_and_hangs_up(stub: StubServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stub.port)
    data = json.dumps(_chat("scripted-not-http", stream=True)).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data)
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert answer.startswith(b"SSH-2.0-") and not answer.startswith(b"HTTP/")
