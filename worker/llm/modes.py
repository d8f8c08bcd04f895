"""Structured output: what each mode asks the endpoint for, and which mode works where.

The modes degrade json_schema -> json_object -> prompt-only: an endpoint that rejects one is asked
with the next, and the planner's `ResponseModes` remembers the one that worked, so later calls skip
the rejection.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

from governance.models import PlanDraft
from plangate_base import codec

MODES: tuple[str, ...] = ("json_schema", "json_object", "prompt")
ATTRIBUTION_HEADERS = {"HTTP-Referer": "https://github.com/plangate/plangate", "X-Title": "plangate"}


class ResponseModes:
    """The structured-output mode to ask one endpoint for: the best until it rejects one, then the one
    that last worked. Owned by the planner that talks to that endpoint, for its lifetime."""

    __slots__ = ("_working",)

    def __init__(self) -> None:
        self._working = MODES[0]

    @property
    def current(self) -> str:
        """The mode to try first."""
        return self._working

    def worked(self, mode: str) -> None:
        """An answer came back in `mode`: start there next time."""
        self._working = mode

    @staticmethod
    def after(mode: str) -> str:
        """The mode to try when the endpoint rejects `mode` (never called for the last one, prompt)."""
        return MODES[MODES.index(mode) + 1]


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


def request_body(
    model: str, max_tokens: int, options: dict[str, Any], messages: list[dict[str, Any]]
) -> bytes:
    """The JSON body of `chat.completions.create(model=, messages=, max_tokens=, stream=True,
    stream_options={"include_usage": True}, **options)`, encoded once, as the SDK would send it (its keys
    in the SDK's order, compact, UTF-8; tests/unit/test_llm_request.py holds the two equal).

    The planner posts these bytes as `AsyncOpenAI.post`'s content, which it sends as they are: neither
    create()'s typed-parameter transform (it walked the message union types per request, ~6 % of a
    worker's CPU, the JSON schema more) nor the SDK's stdlib JSON encoder run per request."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    if "response_format" in options:
        body["response_format"] = options["response_format"]
    body.update(options.get("extra_body", {}))  # merged on top, as the SDK merges extra_body
    return codec.dumpb(body)


@functools.cache
def _plan_schema() -> dict[str, Any]:
    """PlanDraft's JSON schema, built once (pydantic takes milliseconds per build). Never mutated."""
    return PlanDraft.model_json_schema()
