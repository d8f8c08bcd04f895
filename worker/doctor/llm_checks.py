"""`plangate doctor`'s LLM endpoint checks: the endpoint answers `/models` with the configured key
(free, never a completion); with `--probe-llm`, one tiny streamed plan (billed) shows time to first
token, the structured-output mode the endpoint accepts and whether it reports usage."""

from __future__ import annotations

import time

import aiohttp

from governance.models import SEED_AGENT, PlanRequest
from plangate_base.checks import CheckResult, fail, ok, warn
from plangate_base.errors import PlangateError
from worker.llm.modes import MODES
from worker.settings import Settings

TIMEOUT_S = 10.0


async def endpoint(settings: Settings) -> CheckResult:
    """GET {LLM_BASE_URL}/models with the key: reachable, the key accepted, the model listed."""
    name = "llm.endpoint"
    url = settings.llm_base_url.rstrip("/") + "/models"
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http,
            http.get(url, headers=headers, allow_redirects=False) as answer,
        ):
            status = answer.status
            body = await answer.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return fail(name, f"{url}: {type(exc).__name__} {exc}".strip(), "check PLANGATE_LLM_BASE_URL")
    if status in (401, 403):
        return fail(
            name, f"{url} refuses the key ({status})", "check OPENROUTER_API_KEY / PLANGATE_LLM_API_KEY"
        )
    if status != 200:
        return fail(name, f"{url} answered {status}", "check PLANGATE_LLM_BASE_URL (…/v1 for most endpoints)")
    listed = {str(m.get("id")) for m in (body or {}).get("data", []) if isinstance(m, dict)}
    if listed and settings.model not in listed:
        return warn(
            name,
            f"{url} answers ({len(listed)} models), but not {settings.model!r}",
            "set PLANGATE_MODEL to a model the endpoint lists",
        )
    return ok(name, f"{url} answers with the key ({len(listed)} models)")


async def probe(settings: Settings) -> CheckResult:
    """One small streamed plan through the worker's own planner (billed: only with --probe-llm)."""
    from worker.llm.planner import LLMPlanner

    name = "llm.probe"
    planner = LLMPlanner(settings)
    first_token: list[float] = []
    started = time.monotonic()
    request = PlanRequest(
        agent_id=SEED_AGENT.agent_id, description="Say that the endpoint works: a one-step plan."
    )
    try:
        result = await planner.plan(
            agent=SEED_AGENT,
            request=request,
            model=settings.model,
            on_tokens=lambda _n: first_token or first_token.append(time.monotonic() - started),
        )
    except PlangateError as exc:
        return fail(name, f"a probe plan failed: {exc}", "see the error; `plangate worker` would fail alike")
    finally:
        await planner.aclose()
    ttft = f"{first_token[0] * 1000:.0f} ms" if first_token else "?"
    usage = "sends a usage chunk" if not result.usage.estimated else "sends no usage (plangate estimates)"
    why = f"time to first token {ttft}; structured output: {result.response_mode}; {usage}"
    if result.response_mode != MODES[0]:
        return warn(
            name, why, f"the endpoint rejects {MODES[0]}: plans are checked after the fact, fine but slower"
        )
    return ok(name, why)
