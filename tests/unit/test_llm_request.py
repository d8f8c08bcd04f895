"""The planner's request body, encoded once by us, is byte for byte what the SDK's own request building
sends for the same `chat.completions.create` call (the SDK's `_build_request`, not a copy of it)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai._models import FinalRequestOptions

from governance.models import SEED_AGENT, PlanRequest
from worker.llm.modes import MODES, request_body, request_options
from worker.prompt import build_messages

_REQUEST = PlanRequest(agent_id=SEED_AGENT.agent_id, description="Plan a rotation of the logs — ünïcode kept")


def _sdk_request(client: openai.AsyncOpenAI, options: FinalRequestOptions) -> Any:
    return client._build_request(options)


@pytest.mark.parametrize("base_url", ["https://openrouter.ai/api/v1", "http://127.0.0.1:9/v1"])
@pytest.mark.parametrize("mode", MODES)
def test_the_body_is_the_sdks_body_for_the_same_call(base_url: str, mode: str) -> None:
    client = openai.AsyncOpenAI(api_key="k", base_url=base_url)
    messages = build_messages(SEED_AGENT, _REQUEST)
    options = request_options(base_url, mode)
    # What create(**options) puts in the body: its parameters, then extra_body merged on top.
    params = {
        "model": "vendor/model",
        "stream": True,
        "messages": messages,
        "max_tokens": 900,
        "stream_options": {"include_usage": True},
        **({"response_format": options["response_format"]} if "response_format" in options else {}),
    }
    sdk = _sdk_request(
        client,
        FinalRequestOptions.construct(  # type: ignore[no-untyped-call]
            method="post",
            url="/chat/completions",
            json_data=params,
            extra_json=options.get("extra_body"),
            headers=options.get("extra_headers", {}),
        ),
    )
    ours = _sdk_request(
        client,
        FinalRequestOptions.construct(  # type: ignore[no-untyped-call]
            method="post",
            url="/chat/completions",
            content=request_body("vendor/model", 900, options, messages),
            headers=options.get("extra_headers", {}),
        ),
    )
    assert ours.content == sdk.content
    assert ours.headers["content-type"] == sdk.headers["content-type"] == "application/json"
    assert dict(ours.headers) == dict(sdk.headers)
