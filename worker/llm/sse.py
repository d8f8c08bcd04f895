"""A streamed chat completion's body, decoded: SSE framing (`SSEDecoder`), then the OpenAI chunk events
(`AnswerReader`: content deltas, the answering model, finish_reason, the usage-only last event, an
error event inside a 200 stream), with the size caps LLM_MAX_LINE_BYTES and LLM_MAX_ANSWER_BYTES.

Pure: bytes in, an answer (or a typed LLMError) out, no I/O, so every rule has a unit test
(tests/unit/test_sse_decoder.py). Events are read as plain dicts, without the SDK's per-chunk model
objects: that costs a fraction of the SDK's loop per chunk (bench/README.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from worker.errors import LLMAnswerTooLarge, LLMStreamError
from worker.llm.usage import Usage

try:  # a faster JSON parser for stream events when installed (the `fast` extra); stdlib otherwise
    import orjson

    load_event: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    load_event = json.loads

# What the SDK says for an error event without a message of its own.
DEFAULT_ERROR_MESSAGE = "An error occurred during streaming"


class SSEDecoder:
    """Splits a server-sent event stream into the data of its events, as bytes.

    Comment lines (`: keep-alive`) and the `event`, `id` and `retry` fields carry nothing plangate
    uses; lines end in LF, CRLF or CR; an event ends at a blank line; several `data` lines of one
    event are joined with LF (the SSE rules the SDK's decoder follows). Linear in the bytes fed: only
    a new chunk is searched for line ends, and the pieces of an unfinished line are joined once, when
    it ends. A line, or the data of one event, longer than `max_line` raises LLMAnswerTooLarge.
    """

    __slots__ = ("_after_cr", "_data", "_data_size", "_max_line", "_partial", "_partial_size")

    def __init__(self, max_line: int | None = None) -> None:
        self._max_line = max_line if max_line is not None else sys.maxsize
        self._partial: list[bytes] = []  # the pieces of the line not ended yet
        self._partial_size = 0
        self._after_cr = False  # the last chunk ended in CR: an LF opening the next one completes a CRLF
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event completed by this chunk of the body."""
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()  # the start of a line that has not ended yet
        partial = self._partial
        if partial:
            if not lines:
                self._hold(rest)
                return []
            partial.append(lines[0])
            lines[0] = b"".join(partial)
            self._partial, self._partial_size = [], 0
        if rest:
            self._hold(rest)
        limit = self._max_line
        events: list[bytes] = []
        data = self._data
        size = self._data_size
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
                    size = 0
                continue
            if len(line) > limit:
                raise _line_too_long(limit)
            if line.startswith(b"data:"):
                value = line[5:]
                value = value[1:] if value.startswith(b" ") else value
                data.append(value)
                size += len(value)  # the data lines of one event are parsed as one
                if size > limit:
                    raise _line_too_long(limit)
        self._data_size = size
        return events

    def _hold(self, piece: bytes) -> None:
        """Keep the start of a line that has not ended yet."""
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > self._max_line:
            raise _line_too_long(self._max_line)


class AnswerReader:
    """One streamed answer, fed the response body as it arrives: its content, model, finish and usage.

    `feed` returns True at `data: [DONE]` (what follows is not read). An error event (`{"error": ...}`,
    also inside an HTTP 200 stream) raises LLMStreamError, a data line that is not JSON too; the body
    past `max_answer` bytes, or a line past `max_line`, raises LLMAnswerTooLarge. `on_tokens` hears
    the number of content deltas so far, plus `counted` (the deltas of earlier calls of the same plan).
    """

    __slots__ = (
        "_counted",
        "_decoder",
        "_max_answer",
        "_on_tokens",
        "finish",
        "model",
        "parts",
        "received",
        "usage",
    )

    def __init__(
        self,
        max_line: int | None = None,
        max_answer: int | None = None,
        on_tokens: Callable[[int], None] | None = None,
        counted: int = 0,
    ) -> None:
        self._decoder = SSEDecoder(max_line)
        self._max_answer = max_answer if max_answer is not None else sys.maxsize
        self._on_tokens = on_tokens
        self._counted = counted
        self.parts: list[str] = []
        self.model: str | None = None  # the model the first event names (a router may answer another)
        self.finish: str | None = None  # the last finish_reason seen; None: the model did not finish
        self.usage: Usage | None = None  # what the endpoint reported (include_usage), if it did
        self.received = 0

    @property
    def text(self) -> str:
        """The answer's content so far."""
        return "".join(self.parts)

    def feed(self, data: bytes) -> bool:
        """Read one piece of the body; True once the stream said [DONE]."""
        self.received += len(data)
        if self.received > self._max_answer:
            raise LLMAnswerTooLarge(
                f"LLM answer passed LLM_MAX_ANSWER_BYTES={self._max_answer} before the model finished"
            )
        parts, on_tokens = self.parts, self._on_tokens
        for payload in self._decoder.feed(data):
            if payload.startswith(b"[DONE]"):
                return True
            try:
                event = load_event(payload)
            except json.JSONDecodeError as exc:  # a data line that is not JSON (a broken proxy)
                raise LLMStreamError("LLM stream sent a malformed event") from exc
            if not isinstance(event, dict):
                continue
            if event.get("error"):
                raise LLMStreamError(f"LLM stream reported an error: {error_message(event['error'])}")
            if self.model is None and isinstance(event.get("model"), str):
                self.model = event["model"]
            if isinstance(event.get("usage"), dict):
                self.usage = Usage.reported(event["usage"])
            for choice in event.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if content and isinstance(content, str):
                    parts.append(content)
                    if on_tokens is not None:
                        on_tokens(self._counted + len(parts))
                if choice.get("finish_reason"):
                    self.finish = str(choice["finish_reason"])
        return False


def error_message(error: Any) -> str:
    """The message of an error event's `error` member (the SDK's words when it has none)."""
    message = error.get("message") if isinstance(error, dict) else None
    return message if message and isinstance(message, str) else DEFAULT_ERROR_MESSAGE


def _line_too_long(limit: int) -> LLMAnswerTooLarge:
    return LLMAnswerTooLarge(f"LLM stream sent a line longer than LLM_MAX_LINE_BYTES={limit}")
