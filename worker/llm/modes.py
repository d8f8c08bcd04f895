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


def post_options(options: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`request_options` and the messages as the SDK's request options (`AsyncOpenAI.post`'s `options`):
    the messages, response_format and any extra body fields in `extra_json`, which the SDK merges into
    the JSON body as is, the extra headers in `headers`. The typed-parameter transform of `create()` is
    never run: it walked the message union types per request (~6 % of a worker's CPU, the JSON schema
    more) and the rest of the body per request too. The body on the wire is what `create()` sends."""
    extra = {**options.get("extra_body", {}), "messages": messages}
    if "response_format" in options:
        extra["response_format"] = options["response_format"]
    post: dict[str, Any] = {"extra_json": extra}
    if "extra_headers" in options:
        post["headers"] = options["extra_headers"]
    return post


@functools.cache
def _plan_schema() -> dict[str, Any]:
    """PlanDraft's JSON schema, built once (pydantic takes milliseconds per build). Never mutated."""
    return PlanDraft.model_json_schema()
