"""The scripted OpenAI-compatible endpoint: an aiohttp web server on loopback for the demo and tests.

It answers `/v1/chat/completions` (streaming and not) with a deterministic plan derived from the
request text, and misbehaves on purpose when the model name asks for it (see `BEHAVIOURS`). aiohttp
speaks HTTP (keep-alive, chunked bodies both ways); the behaviours that misbehave below HTTP (cut the
connection mid-answer, answer bytes that are not HTTP) act on the request's transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from plangate_base.logs import get_logger
from worker.llm_stub.behaviours import BEHAVIOURS, HOSTILE_ACTIONS, HOSTILE_SIDE_EFFECTS

log = get_logger(__name__)

DEFAULT_BEHAVIOUR = "scripted"
DEFAULT_CHUNKS = 40
HUGE_LINE_BYTES = 64 * 1024 * 1024
NOT_HTTP = b"SSH-2.0-OpenSSH_9.6 plangate-stub\r\n"
_PIECE = 64 * 1024  # bytes per write of a huge line
STALL_AFTER_CHUNKS = 3
RETRY_AFTER_S = 1
_FLAKY = frozenset({"scripted-429", "scripted-cut", "scripted-midstream-error"})
_MAX_BODY = 64 * 1024 * 1024  # a request body the stub reads (aiohttp's default is 1 MiB)


def behaviour_of(model: str) -> str:
    """The behaviour a model name selects: a `vendor/` prefix is ignored, unknown names are `scripted`."""
    name = model.rsplit("/", 1)[-1]
    return name if name in BEHAVIOURS else DEFAULT_BEHAVIOUR


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (the conversation key)."""
    users = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def request_text(messages: list[dict[str, Any]]) -> str:
    """The task text: the description of the latest user message that is a JSON request, else its text."""
    users = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    for text in reversed(users):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("description"), str):
            return data["description"]
    return users[-1] if users else ""


def build_plan(text: str, behaviour: str = DEFAULT_BEHAVIOUR) -> dict[str, Any]:
    """A deterministic PlanDraft-shaped dict whose step titles come from the request text."""
    summary = " ".join(text.split())[:120] or "the request"
    clauses = [c.strip(" .:-") for c in re.split(r"[.;:\n]|,\s*|\bthen\b|\band\b", text)]
    clauses = [c for c in clauses if c][:4] or [summary]
    steps: list[dict[str, Any]] = [
        {
            "title": "Gather read-only context",
            "description": f"Read the docs, inventory and logs that bear on: {summary}",
            "actions": ["read_docs", "read_inventory", "read_logs"],
            "risks": ["The inventory may be out of date"],
        }
    ]
    for clause in clauses:
        steps.append(
            {
                "title": f"Plan: {clause[:100]}",
                "description": f"Work out the ordered changes to {clause[:300]}, without executing any.",
                "actions": ["generate_plan"],
                "risks": [f"Misjudging the impact of: {clause[:100]}"],
            }
        )
    steps.append(
        {
            "title": "Hand the plan to a human for review",
            "description": "Summarise the steps, their risks and rollback points for the operator.",
            "actions": ["generate_plan"],
            "risks": ["Reviewer lacks context"],
        }
    )
    if behaviour == "scripted-forbidden-step":
        steps[1]["actions"] = ["run_terraform"]
    side_effects = ["read_docs", "read_inventory", "read_logs", "generate_plan"]
    if behaviour == "scripted-hostile-actions":
        steps[1:1] = [
            {
                "title": f"Carry out: {action.strip()}",
                "description": "Just do it.",
                "actions": [action],
                "risks": [],
            }
            for action in HOSTILE_ACTIONS
        ]
        side_effects += HOSTILE_SIDE_EFFECTS
    for number, step in enumerate(steps, start=1):
        step["step"] = number
    return {
        "action": f"Plan: {summary[:100]}",
        "decision": "EXECUTE",
        "confidence": {"scripted-low-confidence": 0.3, "scripted-hostile-actions": 0.99}.get(behaviour, 0.9),
        "assumptions": ["The described systems are reachable for read-only inspection"],
        "dependencies": ["Current inventory", "Operator approval before any execution"],
        "side_effects": side_effects,
        "notes_for_humans": f"Scripted plan for: {summary}",
        "plan": steps,
    }


def answer_text(messages: list[dict[str, Any]], behaviour: str) -> str:
    """The full content the stub answers for these messages under this behaviour."""
    if behaviour == "scripted-invalid-json":
        return "Sure! First I would read the logs, then I would think about it. Let me know what you think."
    if behaviour == "scripted-empty":
        return ""
    plan = build_plan(request_text(messages), behaviour)
    if behaviour == "scripted-schema-invalid":
        plan["confidence"] = 7
        del plan["decision"]
    return json.dumps(plan, separators=(",", ":"))


def split_content(text: str, chunks: int = DEFAULT_CHUNKS) -> list[str]:
    """Split text into at most `chunks` pieces of equal size (the number of streamed content deltas)."""
    size = max(1, math.ceil(len(text) / max(1, chunks)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def completion_chunk(
    ident: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> str:
    """One `chat.completion.chunk` SSE event with one choice (`extra`: more top-level members, e.g. error)."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    body.update(choices=[choice], **extra)
    return f"data: {json.dumps(body)}\n\n"


def usage_chunk(ident: str, created: int, model: str, usage: dict[str, int]) -> str:
    """The last SSE event of a stream asked for `include_usage`: no choices, the usage."""
    body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    return f"data: {json.dumps({**body, 'choices': [], 'usage': usage})}\n\n"


DONE = "data: [DONE]\n\n"


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _error(status: int, message: str, type_: str, code: int | str) -> web.Response:
    body = json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()
    return _json(status, body)


def _hang_up(request: web.BaseRequest, *, flush: bool = False) -> None:
    """Drop the connection under the response: at once (abort), or after what was written (`flush`)."""
    transport = request.transport
    if transport is None:  # the client is gone already
        return
    if flush:
        transport.close()
    else:
        transport.abort()


class StubServer:
    """The scripted endpoint on a real socket: `async with StubServer() as stub:` then use `stub.base_url`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunks: int = DEFAULT_CHUNKS,
        slow_seconds: float = 5.0,
        stall_seconds: float = 30.0,
        first_token_seconds: float = 0.0,
        stream_seconds: float = 0.0,
        huge_line_bytes: int = HUGE_LINE_BYTES,
        api_key: str | None = None,
    ) -> None:
        """`chunks`: content deltas per answer; `first_token_seconds` and `stream_seconds`: the latency
        profile of every streamed answer that has none of its own (benchmarks); `huge_line_bytes`: the
        length of scripted-huge-line's line; `api_key`: when set, a request without `Authorization: Bearer
        <api_key>` is refused 401 as OpenAI refuses a wrong key (otherwise any key, or none, is taken)."""
        self.host = host
        self.huge_line_bytes = huge_line_bytes
        self.api_key = api_key
        self.port = port
        self.chunks = chunks
        self.first_token_seconds = first_token_seconds
        self.stream_seconds = stream_seconds
        self.slow_seconds = slow_seconds
        self.stall_seconds = stall_seconds
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.open_streams = 0  # SSE responses being written right now
        self.abandoned_streams = 0  # streams the client hung up on before the end
        self._peers: set[Any] = set()  # the client address of every connection that sent a request
        self._seen: dict[tuple[str, str], int] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._seq = 0

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def connections(self) -> int:
        """How many connections requests came in on (keep-alive reuses one)."""
        return len(self._peers)

    async def start(self) -> None:
        """Bind and start accepting connections (port 0 picks a free port)."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # handler_cancellation: a client that hangs up cancels its handler, so a stall or an endless
        # stream notices at once and no handler outlives its connection. No grace period at stop().
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop accepting and drop every open connection."""
        self._stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StubServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: the two OpenAI routes, else a 404 in OpenAI's error shape."""
        self._peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        method, path = request.method, request.path
        self.paths.append(f"{method} {path}")
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        if method == "GET" and path == "/v1/models":
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "plangate-stub"} for n in BEHAVIOURS
            ]
            return _json(200, json.dumps({"object": "list", "data": data}).encode())
        if method == "POST" and path == "/v1/chat/completions":
            try:
                payload = json.loads(await request.read() or b"null")
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
                return _error(
                    400, "request body must be a JSON object with messages", "invalid_request_error", 400
                )
            self.requests.append(payload)
            self.request_headers.append(
                {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
            )
            return await self._chat(request, payload)
        return _error(404, f"no route for {method} {path}", "invalid_request_error", "not_found")

    def _first_time(self, behaviour: str, messages: list[dict[str, Any]]) -> bool:
        key = (behaviour, hashlib.sha256(last_user_text(messages).encode()).hexdigest())
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key] == 1

    async def _stall(self) -> None:
        """Say nothing for `stall_seconds` (a client that hangs up meanwhile cancels the handler)."""
        await asyncio.sleep(self.stall_seconds)

    async def _chat(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        model = str(payload.get("model") or DEFAULT_BEHAVIOUR)
        behaviour = behaviour_of(model)
        messages = payload["messages"]
        if behaviour == "scripted-not-http":
            if request.transport is not None:
                request.transport.write(NOT_HTTP)
            _hang_up(request, flush=True)
            return web.Response()  # never sent: the connection is closed
        fmt = payload.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
        if fmt_type not in (None, "text", "json_object", "json_schema"):
            return _error(400, f"unknown response_format type {fmt_type!r}", "invalid_request_error", 400)
        if behaviour == "scripted-no-json-schema" and fmt_type == "json_schema":
            message = "response_format json_schema is not supported by this model"
            return _error(400, message, "invalid_request_error", 400)
        if behaviour == "scripted-402":
            return _error(402, "Insufficient credits: add more to continue", "payment_required", 402)
        if behaviour == "scripted-fallback":
            model = f"{model}-backup"  # what a router reports when another model answered
        if behaviour == "scripted-500":
            return _error(500, "scripted failure", "server_error", 500)
        first = behaviour in _FLAKY and self._first_time(behaviour, messages)
        if behaviour == "scripted-429" and first:
            response = _error(429, "rate limited, retry later", "rate_limit_exceeded", 429)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        pieces = split_content(answer_text(messages, behaviour), self.chunks)
        prompt_chars = sum(len(_content_text(m.get("content"))) for m in messages)
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._seq += 1
        ident = f"chatcmpl-stub-{self._seq}"
        fail = first and behaviour in ("scripted-cut", "scripted-midstream-error")
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            answer = _Answer(
                ident, int(time.time()), model, behaviour, pieces, usage if include_usage else None
            )
            return await self._stream(request, answer, fail)
        if behaviour == "scripted-slow":
            await asyncio.sleep(self.slow_seconds)
        if behaviour == "scripted-stall":
            await self._stall()
        if fail and behaviour == "scripted-midstream-error":
            return _error(502, "upstream provider error", "server_error", 502)
        body: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}}],
            "usage": usage,
        }
        body["choices"][0]["finish_reason"] = "stop"
        data = json.dumps(body).encode()
        if fail:  # announce the whole body, send half, hang up
            response = web.StreamResponse(status=200)
            response.content_type = "application/json"
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            _hang_up(request)
            return response
        return _json(200, data)

    async def _stream(self, request: web.Request, answer: _Answer, fail: bool) -> web.StreamResponse:
        """The answer as server-sent events (chunked); a client that hangs up first counts as abandoned."""
        response = web.StreamResponse(status=200, headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)

        async def send(text: str) -> None:
            await response.write(text.encode())

        self.open_streams += 1
        try:
            await self._stream_body(request, send, answer, fail)
        except ConnectionError:
            self.abandoned_streams += 1
            raise
        except asyncio.CancelledError:
            if not self._stopping:  # the client hung up (handler_cancellation), not stop()
                self.abandoned_streams += 1
            raise
        finally:
            self.open_streams -= 1
        return response

    async def _stream_body(self, request: web.Request, send: Any, answer: _Answer, fail: bool) -> None:
        pieces, behaviour = answer.pieces, answer.behaviour
        if behaviour in ("scripted-huge-line", "scripted-endless"):
            return await self._flood(send, answer)
        slow = behaviour == "scripted-slow"
        gap = (self.slow_seconds if slow else self.stream_seconds) / max(1, len(pieces))
        if self.first_token_seconds and not slow:
            await asyncio.sleep(self.first_token_seconds)
        stop_after = min(3, len(pieces)) if fail else len(pieces)
        stall_at = min(STALL_AFTER_CHUNKS, len(pieces) - 1) if behaviour == "scripted-stall" else -1
        for index, piece in enumerate(pieces[:stop_after]):
            if index == stall_at:
                await self._stall()
            if slow or (gap and index):
                await asyncio.sleep(gap)
            if slow:
                await send(": OPENROUTER PROCESSING\n\n" if index % 2 == 0 else ": keep-alive\n\n")
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            await send(answer.chunk(delta))
        if fail and behaviour == "scripted-cut":
            _hang_up(request)  # mid-body: the client sees the chunked body end early
            return
        if fail:  # OpenRouter's shape for an error after generation started
            error = {"message": "upstream provider error during generation", "code": 502}
            await send(answer.chunk({"content": ""}, "error", error=error))
        else:
            await send(answer.chunk({}, "stop"))
            if answer.usage is not None:
                await send(usage_chunk(answer.ident, answer.created, answer.model, answer.usage))
            await send(DONE)

    async def _flood(self, send: Any, answer: _Answer) -> None:
        """More than a client should accept: one line of `huge_line_bytes`, or deltas without end.
        A client that hangs up ends it (the handler is cancelled, or the next write fails). Each write
        also gives the event loop a turn: a write only waits once the socket is full, and a stub in the
        client's own process must not starve it."""
        if answer.behaviour == "scripted-endless":
            # Built once: the stub spends its CPU on the socket, not on JSON, however long it runs.
            batch = "".join(answer.chunk({"content": piece}) for piece in answer.pieces)
            while True:
                await send(batch)
                await asyncio.sleep(0)
        head, _, tail = answer.chunk({"role": "assistant", "content": "\x00"}).partition("\\u0000")
        await send(head)
        filler = "x" * _PIECE
        count = self.huge_line_bytes // _PIECE
        gap = self.stream_seconds / max(1, count)
        for _ in range(count):
            await send(filler)
            await asyncio.sleep(gap)
        await send(tail)
        await send(answer.chunk({}, "stop"))
        await send(DONE)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one streamed answer says: its id, time and model on every chunk, its pieces and usage."""

    ident: str
    created: int
    model: str
    behaviour: str
    pieces: list[str]
    usage: dict[str, int] | None

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return completion_chunk(self.ident, self.created, self.model, delta, finish, **extra)


async def serve_forever(host: str, port: int, api_key: str | None = None) -> None:
    """Run the scripted endpoint until cancelled (the `plangate llm-stub` command)."""
    async with StubServer(host=host, port=port, api_key=api_key) as stub:
        log.info("llm_stub.listening", base_url=stub.base_url, behaviours=len(BEHAVIOURS))
        await asyncio.Event().wait()
