"""SDK and transport errors -> plangate's typed LLM errors (worker/errors.py), whose `code` is the
job's FailureCode: one place that knows what an HTTP status, a timeout, a cut connection or an answer
that is not HTTP means, with a message that names the cause (and the model, when one answered)."""

from __future__ import annotations

import asyncio
import re

import openai

from worker.errors import (
    LLMError,
    LLMOutOfCredits,
    LLMRateLimited,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from worker.llm.transport import aiohttp_module, httpx_module

MAX_RETRY_AFTER_S = 30.0
_MODE_WORDS = ("response_format", "json_schema", "json_object", "structured output")
_SDK_STATUS_PREFIX = re.compile(r"^Error code: \d+ - ")  # the SDK's; our messages say "HTTP <status>"


def typed_error(exc: openai.APIError, model: str, timeout: openai.Timeout, *, streaming: bool) -> LLMError:
    """Map an SDK error to plangate's typed error; `streaming`: it came while reading the body."""
    if isinstance(exc, openai.APITimeoutError) and exc.__cause__ is not None and disconnected(exc.__cause__):
        # (a refused or closed connection that the aiohttp transport reported as a timeout)
        exc = openai.APIConnectionError(message=str(exc.__cause__), request=exc.request)
    if isinstance(exc, openai.APITimeoutError):
        # The SDK wraps the transport's timeout; its class says which phase stalled.
        phase = type(exc.__cause__).__name__
        if phase == "ConnectTimeout":
            return LLMTimeout(f"could not connect to the LLM endpoint within {timeout.connect:g}s")
        if streaming:
            return LLMTimeout(f"LLM stream idle for more than {timeout.read:g}s (model {model})")
        if phase == "ReadTimeout":
            return LLMTimeout(f"LLM endpoint sent no response within {timeout.read:g}s (model {model})")
        return LLMTimeout(f"LLM request timed out ({phase}, model {model})")
    if isinstance(exc, openai.APIConnectionError):
        if streaming:
            return LLMStreamError(f"LLM stream cut before it finished: {exc.message} (model {model})")
        if isinstance(exc.__cause__, httpx_module.RemoteProtocolError):
            return not_http(exc.__cause__)
        return LLMUnavailable(f"LLM endpoint unreachable: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        return status_error(exc, model)
    # No status and no transport cause: the SDK's own error for an error event inside a 200 stream
    # (worker/llm/sse.py reads those itself, with the same words).
    return LLMStreamError(f"LLM stream reported an error: {exc.message} (model {model})")


def status_error(exc: openai.APIStatusError, model: str) -> LLMError:
    """An HTTP error status: 429 rate limited (with its Retry-After), 402 out of credits, 408 a timeout,
    5xx unavailable (all retried but 402), any other 4xx the request's fault."""
    status = exc.status_code
    text = f"HTTP {status} from LLM endpoint for model {model}: {_SDK_STATUS_PREFIX.sub('', exc.message)}"
    if status == 429:
        return LLMRateLimited(text, retry_after=retry_after(exc))
    if status == 402:
        return LLMOutOfCredits(text)
    if status == 408:
        return LLMTimeout(text)
    if status >= 500:
        return LLMUnavailable(text)
    return LLMRequestRejected(text)


def rejects_mode(exc: openai.APIError, mode: str) -> bool:
    """Whether an error answer refuses the structured-output `mode` (so the next mode is worth a try)."""
    if mode == "prompt" or not isinstance(exc, openai.APIStatusError):
        return False
    if exc.status_code in (400, 422):
        return True
    message = str(exc).lower()
    return any(word in message for word in _MODE_WORDS)


def retry_after(exc: openai.APIStatusError) -> float | None:
    """The answer's Retry-After (-ms) in seconds, capped at MAX_RETRY_AFTER_S; None without one."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(max(0.0, float(value) * scale), MAX_RETRY_AFTER_S)
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
    return None


def not_http(cause: BaseException) -> LLMUnavailable:
    """The endpoint's port answered something that is not an HTTP response (another service, a broken
    proxy), as the HTTP parser of either transport saw it. Retried like a refused connection."""
    # aiohttp's message spans lines and points at the bad byte with a caret of its own
    words = str(getattr(cause, "message", None) or cause).split()
    detail = " ".join(word for word in words if word != "^")[:300]
    return LLMUnavailable(f"LLM endpoint's answer is not valid HTTP: {detail}")


def disconnected(err: BaseException) -> bool:
    """A closed connection that the aiohttp transport reports as a timeout (it maps every aiohttp
    ClientConnectionError, ServerDisconnectedError included, to httpx's ConnectTimeout)."""
    cause = err.__cause__
    return (
        aiohttp_module is not None
        and isinstance(cause, aiohttp_module.ClientConnectionError)
        and not isinstance(cause, asyncio.TimeoutError)
    )
