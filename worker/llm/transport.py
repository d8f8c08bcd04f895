"""The HTTP client under the openai SDK: which transport (aiohttp or httpx), its timeouts, and the
transport's own error classes, which the SDK passes on unmapped while a body is read.

Timeouts (see `client_timeout`): connecting is bounded by min(10 s, LLM_TIMEOUT_S); the read
timeout is LLM_IDLE_TIMEOUT_S, the longest silence between two reads of the response, so it also
bounds the wait for the response head and every gap inside a stream. SSE comment lines
(`: keep-alive`, OpenRouter's `: OPENROUTER PROCESSING`) are bytes too and reset that timer: that
is what they are for, and a provider that is still thinking must not be cut off. There is no
wall-clock cap per attempt (a long answer that keeps streaming is legitimate); JOB_TIMEOUT_S
bounds the whole job, the size caps (worker/llm/sse.py) what a stream may send.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import openai

from plangate_base.logs import get_logger
from worker.settings import Settings

try:  # the transport the installed SDK streams over (httpx2 in openai 3, httpx before)
    import httpx2 as httpx_module
except ImportError:  # pragma: no cover - older SDKs
    import httpx as httpx_module  # type: ignore[no-redef]

try:  # the aiohttp transport (openai[aiohttp]); LLM_HTTP=httpx works without it
    import aiohttp as aiohttp_module
except ImportError:  # pragma: no cover - depends on the environment
    aiohttp_module = None  # type: ignore[assignment]

log = get_logger(__name__)

MAX_CONNECT_TIMEOUT_S = 10.0

# aiohttp's errors that the SDK's aiohttp transport passes on unmapped: its HTTP parser's (an answer
# that is not HTTP, e.g. another service on the port) arrive as ClientResponseError "400, Bad status line".
AIOHTTP_ERRORS: tuple[type[BaseException], ...] = (
    (aiohttp_module.ClientError,) if aiohttp_module is not None else ()
)
# What the SDK maps to APITimeoutError / APIConnectionError while reading a stream.
READ_TIMEOUTS: tuple[type[BaseException], ...] = (httpx_module.TimeoutException,)
READ_ERRORS: tuple[type[BaseException], ...] = (
    httpx_module.RequestError,
    ssl.SSLError,
    anyio.EndOfStream,
    *AIOHTTP_ERRORS,
)


def client_timeout(settings: Settings) -> openai.Timeout:
    """The HTTP timeouts of every LLM call: bounded connect, read = the idle timeout, rest = LLM_TIMEOUT_S."""
    return openai.Timeout(
        settings.llm_timeout_s,
        connect=min(MAX_CONNECT_TIMEOUT_S, settings.llm_timeout_s),
        read=settings.llm_idle_timeout_s,
    )


def http_client(transport: str, timeout: openai.Timeout) -> Any:
    """The openai client's HTTP client: the SDK's aiohttp one (its default settings), else its httpx one.

    aiohttp reads a streamed body for about half the CPU per network read of httpx's stack (h11 and
    anyio, a timeout scope per read): with a hundred streams per worker that is most of a worker's CPU
    per job (bench/README.md). Requests, auth, status errors and retries stay the SDK's either way."""
    if transport == "aiohttp" and aiohttp_module is not None and hasattr(openai, "DefaultAioHttpClient"):
        return openai.DefaultAioHttpClient(timeout=timeout)
    if transport == "aiohttp":
        why = "install openai[aiohttp] (aiohttp, and an openai release with DefaultAioHttpClient)"
        log.warning("llm.transport", wanted="aiohttp", using="httpx", why=why)
    return openai.DefaultAsyncHttpxClient(timeout=timeout)
