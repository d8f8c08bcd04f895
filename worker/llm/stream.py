"""Reading one streamed answer off the wire: the response body through `AnswerReader`, in bounded time
and memory, and the connection handed back afterwards.

The SDK opens the stream (request, auth, status errors); the body is read here from the raw response,
with the same errors as the SDK's own loop for a cut or idle stream and for an error event inside a
200 stream. The reader's work per read is linear in the bytes read, and it yields to the event loop
at least once per MiB, so the job's heartbeat keeps beating however fast the body arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from worker.errors import LLMError, LLMStreamError
from worker.llm.error_map import disconnected, typed_error
from worker.llm.sse import AnswerReader
from worker.llm.transport import READ_ERRORS, READ_TIMEOUTS
from worker.llm.usage import Usage

# Give the event loop a turn after this many body bytes, however the transport buffers: a fast
# stream must not starve the job's heartbeat (or other jobs) between two reads that never suspend.
_YIELD_EVERY_BYTES = 1024 * 1024
# After [DONE], how long to read what is left of the body (so an HTTP/1.1 connection is reused).
_DRAIN_S = 0.1


@dataclass
class Progress:
    """Counters across every HTTP call of one plan (retries and the repair round included)."""

    on_tokens: Callable[[int], None]
    attempts: int = 0
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished answer: its text, the model that answered, what it spent, how it was asked."""

    text: str
    model: str
    usage: Usage
    mode: str
    finish: str


async def read_completion(
    stream: Any,
    *,
    model: str,
    mode: str,
    messages: list[dict[str, Any]],
    max_line: int,
    max_answer: int,
    timeout: openai.Timeout,
    progress: Progress,
) -> Completion:
    """Read an opened SDK stream to its end (at most `max_answer` bytes of it) and close it.

    Every failure leaves as a typed LLMError naming `model`; the stream is closed either way, also
    when the task is cancelled mid-stream."""
    base = progress.chunks
    reader = AnswerReader(max_line, max_answer, progress.on_tokens, base)
    response = stream.response
    body = response.aiter_bytes()
    next_yield = _YIELD_EVERY_BYTES
    done = False
    try:
        try:
            async for data in body:
                if reader.feed(data):
                    done = True
                    break
                if reader.received >= next_yield:
                    next_yield = reader.received + _YIELD_EVERY_BYTES
                    await asyncio.sleep(0)
        except READ_TIMEOUTS as err:
            if disconnected(err):
                raise openai.APIConnectionError(request=response.request) from err
            raise openai.APITimeoutError(request=response.request) from err
        except READ_ERRORS as err:
            raise openai.APIConnectionError(request=response.request) from err
        if done:
            await _drain(body)
    except openai.APIError as exc:
        raise typed_error(exc, model, timeout, streaming=True) from exc
    except LLMError as exc:  # the reader's: a size cap, an error event, a malformed event
        raise type(exc)(f"{exc} (model {model})") from exc.__cause__
    finally:
        progress.chunks = base + len(reader.parts)
        # Closing releases the connection, also when the task was cancelled mid-stream.
        await stream.close()
    if reader.finish is None:
        raise LLMStreamError(f"LLM stream ended before the model finished (model {model})")
    usage = reader.usage if reader.usage is not None else Usage.estimate(messages, len(reader.parts))
    return Completion(reader.text, reader.model or model, usage, mode, reader.finish)


async def _drain(body: Any) -> None:
    """Read what is left after [DONE], briefly, so the connection goes back to the pool."""
    with contextlib.suppress(TimeoutError, *READ_TIMEOUTS, *READ_ERRORS):
        async with asyncio.timeout(_DRAIN_S):
            async for _ in body:
                pass
