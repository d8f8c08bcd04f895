"""The planner: asks an OpenAI-compatible endpoint for a plan, streamed, and returns it validated.

Structured output degrades json_schema -> json_object -> prompt-only per endpoint (worker/llm/modes.py),
transient errors retry with capped exponential backoff and full jitter, and a draft that fails
validation gets one repair round. When a model stays unavailable, `Settings.fallback_models` are tried
in order. Every failure leaves as a typed `worker.errors.LLMError` whose message names the cause.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from governance.models import AgentRecord, PlanDraft, PlanRequest
from plangate_base.logs import get_logger
from worker.errors import InvalidOutput, LLMAnswerTooLarge, LLMError, LLMRequestRejected
from worker.llm.error_map import not_http, rejects_mode, typed_error
from worker.llm.modes import ResponseModes, request_body, request_options
from worker.llm.stream import Completion, Progress, read_completion
from worker.llm.transport import AIOHTTP_ERRORS, client_timeout, http_client
from worker.llm.usage import Usage
from worker.prompt import build_messages, repair_messages
from worker.settings import Settings

log = get_logger(__name__)

MAX_BACKOFF_S = 30.0
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


@dataclass(frozen=True)
class LLMResult:
    """A validated draft and how it was obtained."""

    draft: PlanDraft
    model: str
    usage: Usage
    response_mode: str
    attempts: int


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


def parse_draft(text: str) -> PlanDraft:
    """Parse answer text (optionally in ```json fences) into a PlanDraft; raises ValidationError."""
    match = _FENCE.match(text)
    return PlanDraft.model_validate_json(match.group(1) if match else text.strip())


def _backoff(base: float, failures: int, retry_after: float | None) -> float:
    delay = random.uniform(0.0, min(MAX_BACKOFF_S, base * 2 ** (failures - 1)))
    return max(delay, retry_after) if retry_after is not None else delay


class LLMPlanner:
    """Asks an OpenAI-compatible endpoint for a plan, streamed, and returns it validated.

    One per worker process: it owns the HTTP connection pool and the memory of which structured-output
    mode the endpoint accepts (`response_modes`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._base_url = settings.llm_base_url.rstrip("/")
        self._timeout = client_timeout(settings)
        self.response_modes = ResponseModes()
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
        progress = Progress(on_tokens)
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

    async def _plan_with(self, messages: list[dict[str, Any]], model: str, progress: Progress) -> LLMResult:
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
            usage=Usage.sum(usages),
            response_mode=final.mode,
            attempts=progress.attempts,
        )

    async def _complete(self, messages: list[dict[str, Any]], model: str, progress: Progress) -> Completion:
        """One answer, with mode fallback and bounded retries of transient errors."""
        mode = self.response_modes.current
        failures = calls = 0
        while True:
            progress.attempts += 1
            calls += 1
            try:
                completion = await self.stream_once(messages, model, mode, progress)
            except openai.APIError as exc:
                if rejects_mode(exc, mode):
                    lower = ResponseModes.after(mode)
                    status = getattr(exc, "status_code", None)
                    log.info("llm.response_mode_fallback", rejected=mode, next=lower, status=status)
                    mode = lower
                    continue
                error = typed_error(exc, model, self._timeout, streaming=False)
                cause: BaseException | None = exc
            except LLMError as exc:
                error, cause = exc, exc.__cause__
            else:
                self.response_modes.worked(mode)
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

    async def stream_once(
        self,
        messages: list[dict[str, Any]],
        model: str,
        mode: str,
        progress: Progress,
    ) -> Completion:
        """One HTTP call: open the stream and read it to the end (at most LLM_MAX_ANSWER_BYTES of it)."""
        try:
            # `chat.completions.create()`'s request as bytes (see request_body); the SDK still sends it,
            # authenticates it and maps its status errors.
            options = request_options(self._base_url, mode)
            stream = await self._client.post(
                "/chat/completions",
                content=request_body(model, self._settings.max_tokens, options, messages),
                options={"headers": options["extra_headers"]} if "extra_headers" in options else {},
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
        except AIOHTTP_ERRORS as exc:
            raise not_http(exc) from exc
        return await read_completion(
            stream,
            model=model,
            mode=mode,
            messages=messages,
            max_line=self._settings.llm_max_line_bytes,
            max_answer=self._settings.llm_max_answer_bytes,
            timeout=self._timeout,
            progress=progress,
        )


def _problem(completion: Completion, exc: ValidationError, limit: int = 4_000) -> str:
    """Why an answer is not a plan, in words the operator and (in the repair round) the model can act on."""
    if not completion.text.strip():
        return f"the answer was empty (no content before finish_reason {completion.finish!r})"
    problem = str(exc)[:limit]
    if completion.finish == "length":
        problem = f"the answer was cut off at max_tokens; {problem}"
    return problem
