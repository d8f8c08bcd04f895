"""The scripted OpenAI-compatible endpoint: a small HTTP/1.1 server on loopback for the demo and tests.

It answers `/v1/chat/completions` (streaming and not) with a deterministic plan derived from the
request text, and misbehaves on purpose when the model name asks for it (see `BEHAVIOURS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from typing import Any

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
_MAX_HEAD = 64 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    402: "Payment Required",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


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


def _json_head(status: int, length: int, extra: dict[str, str] | None = None, close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}"] + [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _error_body(message: str, type_: str, code: int | str) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


class _Cut(Exception):
    """Raised inside a handler to drop the connection without finishing the response."""


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
    ) -> None:
        """`chunks`: content deltas per answer; `first_token_seconds` and `stream_seconds`: the latency
        profile of every streamed answer that has none of its own (benchmarks); `huge_line_bytes`: the
        length of scripted-huge-line's line."""
        self.host = host
        self.huge_line_bytes = huge_line_bytes
        self.port = port
        self.chunks = chunks
        self.first_token_seconds = first_token_seconds
        self.stream_seconds = stream_seconds
        self.slow_seconds = slow_seconds
        self.stall_seconds = stall_seconds
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.connections = 0
        self.open_streams = 0  # SSE responses being written right now
        self.abandoned_streams = 0  # streams the client hung up on before the end
        self._seen: dict[tuple[str, str], int] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._seq = 0

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start accepting connections (port 0 picks a free port)."""
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port, limit=_MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting and drop every open connection."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> StubServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (_Cut, ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # stop() cancels open connections; asyncio 3.11 complains about a cancelled callback task.
            writer.transport.abort()
            if not self._stopping:
                raise
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
            finally:
                # Only now, so stop() waits for (and cancels) handlers that are still closing.
                self._handlers.discard(task)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = [*request_line.split(" "), "", ""][:3]
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self._read_body(reader, headers)
        keep = headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        self.paths.append(f"{method} {path}")
        if method == "GET" and path == "/v1/models":
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "plangate-stub"} for n in BEHAVIOURS
            ]
            await self._send_json(
                writer, 200, json.dumps({"object": "list", "data": data}).encode(), close=not keep
            )
        elif method == "POST" and path == "/v1/chat/completions":
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
                err = _error_body(
                    "request body must be a JSON object with messages", "invalid_request_error", 400
                )
                await self._send_json(writer, 400, err, close=not keep)
            else:
                self.requests.append(payload)
                self.request_headers.append({k: v for k, v in headers.items() if k != "authorization"})
                await self._chat(reader, writer, payload)
        else:
            err = _error_body(f"no route for {method} {path}", "invalid_request_error", "not_found")
            await self._send_json(writer, 404, err, close=not keep)
        return keep

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    return b"".join(p[:-2] for p in parts)
        return await reader.readexactly(int(headers.get("content-length", "0") or 0))

    @staticmethod
    async def _send_json(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        extra: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        writer.write(_json_head(status, len(body), extra, close) + body)
        await writer.drain()

    def _first_time(self, behaviour: str, messages: list[dict[str, Any]]) -> bool:
        key = (behaviour, hashlib.sha256(last_user_text(messages).encode()).hexdigest())
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key] == 1

    async def _stall(self, reader: asyncio.StreamReader) -> None:
        """Say nothing for `stall_seconds`, but notice at once when the client hangs up (no handler leaks)."""
        try:
            async with asyncio.timeout(self.stall_seconds):
                # HTTP/1.1 clients do not pipeline, so anything read here is not a request we owe an answer.
                while await reader.read(4096):
                    pass
        except TimeoutError:
            return
        raise ConnectionResetError("the client hung up during the stall")

    async def _chat(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: dict[str, Any]
    ) -> None:
        model = str(payload.get("model") or DEFAULT_BEHAVIOUR)
        behaviour = behaviour_of(model)
        messages = payload["messages"]
        if behaviour == "scripted-not-http":
            writer.write(NOT_HTTP)
            await writer.drain()
            raise _Cut
        fmt = payload.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
        if fmt_type not in (None, "text", "json_object", "json_schema"):
            err = _error_body(f"unknown response_format type {fmt_type!r}", "invalid_request_error", 400)
            return await self._send_json(writer, 400, err)
        if behaviour == "scripted-no-json-schema" and fmt_type == "json_schema":
            message = "response_format json_schema is not supported by this model"
            return await self._send_json(writer, 400, _error_body(message, "invalid_request_error", 400))
        if behaviour == "scripted-402":
            message = "Insufficient credits: add more to continue"
            return await self._send_json(writer, 402, _error_body(message, "payment_required", 402))
        if behaviour == "scripted-fallback":
            model = f"{model}-backup"  # what a router reports when another model answered
        if behaviour == "scripted-500":
            return await self._send_json(writer, 500, _error_body("scripted failure", "server_error", 500))
        first = behaviour in _FLAKY and self._first_time(behaviour, messages)
        if behaviour == "scripted-429" and first:
            err = _error_body("rate limited, retry later", "rate_limit_exceeded", 429)
            return await self._send_json(writer, 429, err, {"Retry-After": str(RETRY_AFTER_S)})
        pieces = split_content(answer_text(messages, behaviour), self.chunks)
        prompt_chars = sum(len(_content_text(m.get("content"))) for m in messages)
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._seq += 1
        ident = f"chatcmpl-stub-{self._seq}"
        fail = first and behaviour in ("scripted-cut", "scripted-midstream-error")
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            await self._stream(
                reader, writer, ident, model, behaviour, pieces, usage if include_usage else None, fail
            )
            return None
        if behaviour == "scripted-slow":
            await asyncio.sleep(self.slow_seconds)
        if behaviour == "scripted-stall":
            await self._stall(reader)
        if fail and behaviour == "scripted-midstream-error":
            return await self._send_json(
                writer, 502, _error_body("upstream provider error", "server_error", 502)
            )
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
            writer.write(_json_head(200, len(data)) + data[: len(data) // 2])
            await writer.drain()
            raise _Cut
        return await self._send_json(writer, 200, data)

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ident: str,
        model: str,
        behaviour: str,
        pieces: list[str],
        usage: dict[str, int] | None,
        fail: bool,
    ) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        created = int(time.time())

        async def send(text: str) -> None:
            data = text.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
            body.update(choices=[choice], **extra)
            return f"data: {json.dumps(body)}\n\n"

        self.open_streams += 1
        try:
            await self._stream_body(
                reader, send, chunk, behaviour, pieces, usage, fail, ident, created, model
            )
        except ConnectionError:
            self.abandoned_streams += 1
            raise
        finally:
            self.open_streams -= 1
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _stream_body(
        self,
        reader: asyncio.StreamReader,
        send: Any,
        chunk: Any,
        behaviour: str,
        pieces: list[str],
        usage: dict[str, int] | None,
        fail: bool,
        ident: str,
        created: int,
        model: str,
    ) -> None:
        if behaviour in ("scripted-huge-line", "scripted-endless"):
            return await self._flood(send, chunk, behaviour, pieces)
        slow = behaviour == "scripted-slow"
        gap = (self.slow_seconds if slow else self.stream_seconds) / max(1, len(pieces))
        if self.first_token_seconds and not slow:
            await asyncio.sleep(self.first_token_seconds)
        stop_after = min(3, len(pieces)) if fail else len(pieces)
        stall_at = min(STALL_AFTER_CHUNKS, len(pieces) - 1) if behaviour == "scripted-stall" else -1
        for index, piece in enumerate(pieces[:stop_after]):
            if index == stall_at:
                await self._stall(reader)
            if slow or (gap and index):
                await asyncio.sleep(gap)
            if slow:
                await send(": OPENROUTER PROCESSING\n\n" if index % 2 == 0 else ": keep-alive\n\n")
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            await send(chunk(delta))
        if fail and behaviour == "scripted-cut":
            raise _Cut
        if fail:  # OpenRouter's shape for an error after generation started
            error = {"message": "upstream provider error during generation", "code": 502}
            await send(chunk({"content": ""}, "error", error=error))
        else:
            await send(chunk({}, "stop"))
            if usage is not None:
                body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
                await send(f"data: {json.dumps({**body, 'choices': [], 'usage': usage})}\n\n")
            await send("data: [DONE]\n\n")

    async def _flood(self, send: Any, chunk: Any, behaviour: str, pieces: list[str]) -> None:
        """More than a client should accept: one line of `huge_line_bytes`, or deltas without end.
        A client that hangs up ends it (the next write fails). Each write also gives the event loop a
        turn: drain() only waits once the socket is full, and a stub in the client's own process must
        not starve it."""
        if behaviour == "scripted-endless":
            # Built once: the stub spends its CPU on the socket, not on JSON, however long it runs.
            batch = "".join(chunk({"content": piece}) for piece in pieces)
            while True:
                await send(batch)
                await asyncio.sleep(0)
        head, _, tail = chunk({"role": "assistant", "content": "\x00"}).partition("\\u0000")
        await send(head)
        filler = "x" * _PIECE
        count = self.huge_line_bytes // _PIECE
        gap = self.stream_seconds / max(1, count)
        for _ in range(count):
            await send(filler)
            await asyncio.sleep(gap)
        await send(tail)
        await send(chunk({}, "stop"))
        await send("data: [DONE]\n\n")


async def serve_forever(host: str, port: int) -> None:
    """Run the scripted endpoint until cancelled (the `plangate llm-stub` command)."""
    async with StubServer(host=host, port=port) as stub:
        log.info("llm_stub.listening", base_url=stub.base_url, behaviours=len(BEHAVIOURS))
        await asyncio.Event().wait()
