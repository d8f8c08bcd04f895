"""The one module that talks to the LLM: a streamed chat completion, parsed into a PlanDraft.

Structured output degrades json_schema -> json_object -> prompt-only per endpoint, transient
errors retry with capped exponential backoff and full jitter, and a draft that fails validation
gets one repair round. When a model stays unavailable, `Settings.fallback_models` are tried in
order. Every failure leaves as a typed `worker.errors.LLMError` whose message names the cause.

Timeouts (see `client_timeout`): connecting is bounded by min(10 s, LLM_TIMEOUT_S); the read
timeout is LLM_IDLE_TIMEOUT_S, the longest silence between two reads of the response, so it also
bounds the wait for the response head and every gap inside a stream. SSE comment lines
(`: keep-alive`, OpenRouter's `: OPENROUTER PROCESSING`) are bytes too and reset that timer: that
is what they are for, and a provider that is still thinking must not be cut off. There is no
wall-clock cap per attempt (a long answer that keeps streaming is legitimate); JOB_TIMEOUT_S
bounds the whole job. What a stream may send is capped instead: one SSE line (or event) at
LLM_MAX_LINE_BYTES, the whole answer at LLM_MAX_ANSWER_BYTES (`LLMAnswerTooLarge`), so a broken or
hostile endpoint (one endless line, a stream that never finishes) ends the call in bounded time and
memory; the reader's work per read is linear in the bytes read, and it yields to the event loop at
least once per MiB, so the job's heartbeat keeps beating meanwhile.

The SDK opens the stream (request, auth, status errors); the events are read here from the raw
response (`SSEDecoder`) as plain dicts, without the SDK's per-chunk model objects: that costs a
fraction of the SDK's loop per chunk (bench/README.md), with the same errors for a cut or idle
stream and for an error event inside a 200 stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import openai
from pydantic import ValidationError

from governance.models import AgentRecord, PlanDraft, PlanRequest
from plangate_base.logs import get_logger
from worker.errors import (
    InvalidOutput,
    LLMAnswerTooLarge,
    LLMError,
    LLMOutOfCredits,
    LLMRateLimited,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from worker.prompt import build_messages, repair_messages
from worker.settings import Settings

try:  # the transport the installed SDK streams over (httpx2 in openai 3, httpx before)
    import httpx2 as _transport
except ImportError:  # pragma: no cover - older SDKs
    import httpx as _transport  # type: ignore[no-redef]

try:  # a faster JSON parser for stream events when installed (the `fast` extra); stdlib otherwise
    import orjson

    _load_event: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _load_event = json.loads

log = get_logger(__name__)

try:  # the aiohttp transport (openai[aiohttp]); LLM_HTTP=httpx works without it
    import aiohttp as _AIOHTTP
except ImportError:  # pragma: no cover - depends on the environment
    _AIOHTTP = None  # type: ignore[assignment]

# aiohttp's errors that the SDK's aiohttp transport passes on unmapped: its HTTP parser's (an answer
# that is not HTTP, e.g. another service on the port) arrive as ClientResponseError "400, Bad status line".
_AIOHTTP_ERRORS: tuple[type[BaseException], ...] = (_AIOHTTP.ClientError,) if _AIOHTTP is not None else ()
# What the SDK maps to APITimeoutError / APIConnectionError while reading a stream.
_READ_TIMEOUTS: tuple[type[BaseException], ...] = (_transport.TimeoutException,)
_READ_ERRORS: tuple[type[BaseException], ...] = (
    _transport.RequestError,
    ssl.SSLError,
    anyio.EndOfStream,
    *_AIOHTTP_ERRORS,
)
# Give the event loop a turn after this many body bytes, however the transport buffers: a fast
# stream must not starve the job's heartbeat (or other jobs) between two reads that never suspend.
_YIELD_EVERY_BYTES = 1024 * 1024
# After [DONE], how long to read what is left of the body (so an HTTP/1.1 connection is reused).
_DRAIN_S = 0.1

MODES: tuple[str, ...] = ("json_schema", "json_object", "prompt")
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 30.0
MAX_CONNECT_TIMEOUT_S = 10.0
ATTRIBUTION_HEADERS = {"HTTP-Referer": "https://github.com/plangate/plangate", "X-Title": "plangate"}
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_MODE_WORDS = ("response_format", "json_schema", "json_object", "structured output")
_SDK_STATUS_PREFIX = re.compile(r"^Error code: \d+ - ")  # the SDK's; our messages say "HTTP <status>"

# The structured-output mode that last worked, per base URL; one per process.
_working_mode: dict[str, str] = {}


def forget_response_modes() -> None:
    """Forget which structured-output mode worked where (tests; a long-lived process never needs it)."""
    _working_mode.clear()


@dataclass(frozen=True)
class LLMResult:
    """A validated draft and how it was obtained."""

    draft: PlanDraft
    model: str
    usage: dict[str, Any]
    response_mode: str
    attempts: int


@dataclass
class _Progress:
    """Counters across every HTTP call of one plan (retries and the repair round included)."""

    on_tokens: Callable[[int], None]
    attempts: int = 0
    chunks: int = 0


@dataclass
class _Completion:
    text: str
    model: str
    usage: dict[str, Any]
    mode: str
    finish: str


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
    if transport == "aiohttp" and _AIOHTTP is not None and hasattr(openai, "DefaultAioHttpClient"):
        return openai.DefaultAioHttpClient(timeout=timeout)
    if transport == "aiohttp":
        why = "install openai[aiohttp] (aiohttp, and an openai release with DefaultAioHttpClient)"
        log.warning("llm.transport", wanted="aiohttp", using="httpx", why=why)
    return openai.DefaultAsyncHttpxClient(timeout=timeout)


def models_to_try(model: str, fallbacks: list[str]) -> list[str]:
    """The requested model, then each fallback model once, in order."""
    return list(dict.fromkeys([model, *fallbacks]))


def falls_back(error: LLMError) -> bool:
    """Whether a failed model is worth replacing by the next fallback model.

    Yes for transient errors that outlived their retries (the model or its route is down), for
    a rejected request (an unknown or retired model id, a parameter this model lacks: another model
    may accept it, at the cost of one quick request) and for an answer past a size cap (that model or
    its route ignores max_tokens or never ends; the next one is held to the same caps). No for
    out-of-credits (the account is empty for every model) and for invalid output: the endpoint works
    and the model answered, so falling back would spend tokens twice and hide a prompt or model
    problem the record should show.
    """
    return error.retryable or isinstance(error, (LLMRequestRejected, LLMAnswerTooLarge))


def is_openrouter(base_url: str) -> bool:
    """Whether the base URL points at OpenRouter (its host contains openrouter.ai)."""
    return "openrouter.ai" in (urlsplit(base_url).hostname or "")


def request_options(base_url: str, mode: str) -> dict[str, Any]:
    """The extra keyword arguments of `chat.completions.create` for a structured-output mode."""
    options: dict[str, Any] = {}
    if mode == "json_schema":
        schema = _plan_schema()
        options["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "plan", "strict": False, "schema": schema},
        }
    elif mode == "json_object":
        options["response_format"] = {"type": "json_object"}
    if is_openrouter(base_url):
        options["extra_headers"] = dict(ATTRIBUTION_HEADERS)
        if mode == "json_schema":
            # Route only to providers that honour response_format instead of silently ignoring it.
            options["extra_body"] = {"provider": {"require_parameters": True}}
    return options


@functools.cache
def _plan_schema() -> dict[str, Any]:
    """PlanDraft's JSON schema, built once (pydantic takes milliseconds per build). Never mutated."""
    return PlanDraft.model_json_schema()


def _sdk_options(options: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`request_options` and the messages as `create()` arguments: the messages and response_format ride
    in extra_body, which the SDK merges into the JSON body as is, instead of walking them through its
    typed-parameter transform per request (the message union types made that ~6 % of a worker's CPU,
    the JSON schema more). The body on the wire is the same."""
    rest = {k: v for k, v in options.items() if k != "response_format"}
    extra = {**options.get("extra_body", {}), "messages": messages}
    if "response_format" in options:
        extra["response_format"] = options["response_format"]
    rest["extra_body"] = extra
    return rest


def parse_draft(text: str) -> PlanDraft:
    """Parse answer text (optionally in ```json fences) into a PlanDraft; raises ValidationError."""
    match = _FENCE.match(text)
    return PlanDraft.model_validate_json(match.group(1) if match else text.strip())


def _retry_after(exc: openai.APIStatusError) -> float | None:
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


def _rejects_mode(exc: openai.APIError, mode: str) -> bool:
    if mode == "prompt" or not isinstance(exc, openai.APIStatusError):
        return False
    if exc.status_code in (400, 422):
        return True
    message = str(exc).lower()
    return any(word in message for word in _MODE_WORDS)


def _typed(exc: openai.APIError, model: str, timeout: openai.Timeout, *, streaming: bool) -> LLMError:
    """Map an SDK error to plangate's typed error, with a message that names the cause."""
    if isinstance(exc, openai.APITimeoutError) and exc.__cause__ is not None and _disconnected(exc.__cause__):
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
        if isinstance(exc.__cause__, _transport.RemoteProtocolError):
            return _not_http(exc.__cause__)
        return LLMUnavailable(f"LLM endpoint unreachable: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = f"HTTP {status} from LLM endpoint for model {model}: {_SDK_STATUS_PREFIX.sub('', exc.message)}"
        if status == 429:
            return LLMRateLimited(text, retry_after=_retry_after(exc))
        if status == 402:
            return LLMOutOfCredits(text)
        if status == 408:
            return LLMTimeout(text)
        if status >= 500:
            return LLMUnavailable(text)
        return LLMRequestRejected(text)
    # No status: an error event inside a 200 stream (the SDK never retries these).
    return LLMStreamError(f"LLM stream reported an error: {exc.message} (model {model})")


def _backoff(base: float, failures: int, retry_after: float | None) -> float:
    delay = random.uniform(0.0, min(MAX_BACKOFF_S, base * 2 ** (failures - 1)))
    return max(delay, retry_after) if retry_after is not None else delay


def _estimate_usage(messages: list[dict[str, Any]], chunks: int) -> dict[str, Any]:
    prompt = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": chunks,
        "total_tokens": prompt + chunks,
        "estimated": True,
    }


class LLMPlanner:
    """Asks an OpenAI-compatible endpoint for a plan, streamed, and returns it validated."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._base_url = settings.llm_base_url.rstrip("/")
        self._timeout = client_timeout(settings)
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=key or "unused",
            max_retries=0,  # retries are ours: typed, logged, with jitter and Retry-After
            timeout=self._timeout,
            http_client=http_client(settings.llm_http, self._timeout),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def plan(
        self,
        *,
        agent: AgentRecord,
        request: PlanRequest,
        model: str,
        on_tokens: Callable[[int], None],
        messages: list[dict[str, Any]] | None = None,
    ) -> LLMResult:
        """Stream a plan for `request` from `model`, else from each fallback model in turn.

        `messages` are `build_messages(agent, request)` when the caller has them already."""
        progress = _Progress(on_tokens)
        messages = messages if messages is not None else build_messages(agent, request)
        models = models_to_try(model, self._settings.fallback_models)
        for index, candidate in enumerate(models):
            try:
                return await self._plan_with(messages, candidate, progress)
            except LLMError as error:
                last = index == len(models) - 1
                if not last and falls_back(error):
                    following = models[index + 1]
                    log.warning(
                        "llm.fallback", failed=candidate, error=error.code, reason=str(error), next=following
                    )
                    continue
                if index == 0:
                    raise
                tried = ", ".join(models[: index + 1])
                raise type(error)(f"{error}; models tried: {tried}", retry_after=error.retry_after) from error
        raise AssertionError("unreachable: models_to_try always names the requested model")

    async def _plan_with(self, messages: list[dict[str, Any]], model: str, progress: _Progress) -> LLMResult:
        """One model's answer, with one repair round if it does not validate."""
        first = await self._complete(messages, model, progress)
        usages = [first.usage]
        try:
            draft = parse_draft(first.text)
            final = first
        except ValidationError as exc:
            log.warning("llm.repair", model=model, errors=exc.error_count(), attempt=progress.attempts)
            retry_messages = repair_messages(messages, first.text, _problem(first, exc))
            final = await self._complete(retry_messages, model, progress)
            usages.append(final.usage)
            try:
                draft = parse_draft(final.text)
            except ValidationError as again:
                raise InvalidOutput(
                    f"LLM answer from model {model} is not a valid plan after the repair round "
                    f"({progress.attempts} attempts): {_problem(final, again, 300)}"
                ) from again
        return LLMResult(
            draft=draft,
            model=final.model,
            usage=_sum_usage(usages),
            response_mode=final.mode,
            attempts=progress.attempts,
        )

    async def _complete(self, messages: list[dict[str, Any]], model: str, progress: _Progress) -> _Completion:
        """One answer, with mode fallback and bounded retries of transient errors."""
        mode = _working_mode.get(self._base_url, MODES[0])
        failures = calls = 0
        while True:
            progress.attempts += 1
            calls += 1
            try:
                completion = await self._stream_once(messages, model, mode, progress)
            except openai.APIError as exc:
                if _rejects_mode(exc, mode):
                    lower = MODES[MODES.index(mode) + 1]
                    status = getattr(exc, "status_code", None)
                    log.info("llm.response_mode_fallback", rejected=mode, next=lower, status=status)
                    mode = lower
                    continue
                error = _typed(exc, model, self._timeout, streaming=False)
                cause: BaseException | None = exc
            except LLMError as exc:
                error, cause = exc, exc.__cause__
            else:
                _working_mode[self._base_url] = mode
                return completion
            if not error.retryable or failures >= self._settings.llm_max_retries:
                if error.retryable:
                    tries = f"{calls} attempt" + ("s" if calls > 1 else "")
                    error = type(error)(f"{error}; gave up after {tries}", retry_after=None)
                raise error from cause
            failures += 1
            delay = _backoff(self._settings.llm_backoff_s, failures, error.retry_after)
            log.warning(
                "llm.retry", error=error.code, attempt=progress.attempts, delay_s=round(delay, 3), model=model
            )
            await asyncio.sleep(delay)

    async def _stream_once(
        self,
        messages: list[dict[str, Any]],
        model: str,
        mode: str,
        progress: _Progress,
    ) -> _Completion:
        """One HTTP call: open the stream and read it to the end (at most LLM_MAX_ANSWER_BYTES of it)."""
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                messages=[],  # the real ones are in extra_body (see _sdk_options), which replaces this
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=self._settings.max_tokens,
                **_sdk_options(request_options(self._base_url, mode), messages),
            )
        except _AIOHTTP_ERRORS as exc:
            raise _not_http(exc) from exc
        parts: list[str] = []
        answered_model: str | None = None
        finish: str | None = None
        usage: dict[str, Any] | None = None
        on_tokens, base = progress.on_tokens, progress.chunks
        response = stream.response
        max_line, max_answer = self._settings.llm_max_line_bytes, self._settings.llm_max_answer_bytes
        decoder = SSEDecoder(max_line)
        body = response.aiter_bytes()
        received, next_yield = 0, _YIELD_EVERY_BYTES
        done = False
        try:
            try:
                async for data in body:
                    received += len(data)
                    if received > max_answer:
                        raise LLMAnswerTooLarge(
                            f"LLM answer passed LLM_MAX_ANSWER_BYTES={max_answer} before the model finished"
                        )
                    if received >= next_yield:
                        next_yield = received + _YIELD_EVERY_BYTES
                        await asyncio.sleep(0)
                    for payload in decoder.feed(data):
                        if payload.startswith(b"[DONE]"):
                            done = True
                            break
                        event = _load_event(payload)
                        if not isinstance(event, dict):
                            continue
                        if event.get("error"):
                            raise _stream_error(event["error"], response.request)
                        if answered_model is None and isinstance(event.get("model"), str):
                            answered_model = event["model"]
                        if isinstance(event.get("usage"), dict):
                            usage = event["usage"]
                        for choice in event.get("choices") or ():
                            if not isinstance(choice, dict):
                                continue
                            delta = choice.get("delta")
                            content = delta.get("content") if isinstance(delta, dict) else None
                            if content and isinstance(content, str):
                                parts.append(content)
                                on_tokens(base + len(parts))
                            if choice.get("finish_reason"):
                                finish = str(choice["finish_reason"])
                    if done:
                        break
            except _READ_TIMEOUTS as err:
                if _disconnected(err):
                    raise openai.APIConnectionError(request=response.request) from err
                raise openai.APITimeoutError(request=response.request) from err
            except _READ_ERRORS as err:
                raise openai.APIConnectionError(request=response.request) from err
            if done:
                await _drain(body)
        except openai.APIError as exc:
            raise _typed(exc, model, self._timeout, streaming=True) from exc
        except LLMAnswerTooLarge as exc:
            raise LLMAnswerTooLarge(f"{exc} (model {model})") from None
        except json.JSONDecodeError as exc:  # a data line that is not JSON (a broken proxy)
            raise LLMStreamError(f"LLM stream sent a malformed event (model {model})") from exc
        finally:
            progress.chunks = base + len(parts)
            # Closing releases the connection, also when the task was cancelled mid-stream.
            await stream.close()
        if finish is None:
            raise LLMStreamError(f"LLM stream ended before the model finished (model {model})")
        if usage is None:
            usage_dict = _estimate_usage(messages, len(parts))
        else:
            usage_dict = {
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "estimated": False,
            }
        answered = answered_model or model
        return _Completion(text="".join(parts), model=answered, usage=usage_dict, mode=mode, finish=finish)


def _not_http(cause: BaseException) -> LLMUnavailable:
    """The endpoint's port answered something that is not an HTTP response (another service, a broken
    proxy), as the HTTP parser of either transport saw it. Retried like a refused connection."""
    # aiohttp's message spans lines and points at the bad byte with a caret of its own
    words = str(getattr(cause, "message", None) or cause).split()
    detail = " ".join(word for word in words if word != "^")[:300]
    return LLMUnavailable(f"LLM endpoint's answer is not valid HTTP: {detail}")


def _disconnected(err: BaseException) -> bool:
    """A closed connection that the aiohttp transport reports as a timeout (it maps every aiohttp
    ClientConnectionError, ServerDisconnectedError included, to httpx's ConnectTimeout)."""
    cause = err.__cause__
    return (
        _AIOHTTP is not None
        and isinstance(cause, _AIOHTTP.ClientConnectionError)
        and not isinstance(cause, asyncio.TimeoutError)
    )


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


def _line_too_long(limit: int) -> LLMAnswerTooLarge:
    return LLMAnswerTooLarge(f"LLM stream sent a line longer than LLM_MAX_LINE_BYTES={limit}")


def _stream_error(error: Any, request: Any) -> openai.APIError:
    """The SDK's error for an error event inside a 200 stream (it has no status code)."""
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=request, body=error)


async def _drain(body: Any) -> None:
    """Read what is left after [DONE], briefly, so the connection goes back to the pool."""
    with contextlib.suppress(TimeoutError, *_READ_TIMEOUTS, *_READ_ERRORS):
        async with asyncio.timeout(_DRAIN_S):
            async for _ in body:
                pass


def _problem(completion: _Completion, exc: ValidationError, limit: int = 4_000) -> str:
    """Why an answer is not a plan, in words the operator and (in the repair round) the model can act on."""
    if not completion.text.strip():
        return f"the answer was empty (no content before finish_reason {completion.finish!r})"
    problem = str(exc)[:limit]
    if completion.finish == "length":
        problem = f"the answer was cut off at max_tokens; {problem}"
    return problem


def _sum_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "estimated": False,
    }
    for usage in usages:
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            total[key] += int(usage.get(key) or 0)
        total["estimated"] = total["estimated"] or bool(usage.get("estimated"))
    return total
