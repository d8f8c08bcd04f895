"""Tenants, quotas, usage, isolation and agent keys against a real worker and Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from governance.models import AgentRecord, TenantRecord
from governance.registry import AgentRegistry, TenantRegistry
from plangate_base.clock import utc_day
from plangate_base.vocabulary import JobState, Phase, RefusalCode
from worker.admin import AgentAdmin, agent_keys
from worker.client import PlanClient
from worker.errors import BadRequest, JobNotFound
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 20.0


async def _tenant(
    redis: Redis, settings: Settings, tenant: TenantRecord, *agents: str, keyless: bool = True
) -> None:
    """A tenant and its agents; the agents are keyless (an explicit opt-out) unless a test needs keys."""
    keys = Keys(settings.key_prefix)
    await TenantRegistry(redis, keys).put(tenant)
    for agent_id in agents:
        record = AgentRecord(agent_id=agent_id, tenant_id=tenant.tenant_id, keyless=keyless)
        await AgentRegistry(redis, keys).put(record)


def _request(agent: str, tenant: str, **fields: object) -> dict[str, object]:
    return {"agent_id": agent, "tenant_id": tenant, "description": "Plan the quarterly patching", **fields}


async def _account(redis: Redis, settings: Settings, tenant: str) -> dict[str, float]:
    raw = await redis.hgetall(Keys(settings.key_prefix).tenant_day(tenant, utc_day()))
    return {k: float(v) for k, v in raw.items()}


async def test_an_agent_plans_only_for_its_own_tenant(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, TenantRecord(tenant_id="acme", projects=["apollo"]), "acme-planner")
    ok = await client.wait(await client.submit(_request("acme-planner", "acme", project_id="apollo")), WAIT_S)
    assert ok.state is JobState.DONE
    for fields in ({"tenant_id": "default"}, {"project_id": "gemini"}, {"tenant_id": "ghost"}):
        refused = await client.wait(
            await client.submit({**_request("acme-planner", "acme"), **fields}), WAIT_S
        )
        assert refused.refusal and refused.refusal.code == RefusalCode.TENANT_MISMATCH, fields


async def test_a_tenant_client_cannot_see_other_tenants_jobs(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, TenantRecord(tenant_id="acme"), "acme-planner")
    await _tenant(redis, settings, TenantRecord(tenant_id="globex"), "globex-planner")
    async with (
        PlanClient.connect(settings, tenant_id="acme") as acme,
        PlanClient.connect(settings, tenant_id="globex") as globex,
    ):
        theirs = await globex.submit(_request("globex-planner", "globex", model="scripted-slow"))
        mine = await acme.submit({"agent_id": "acme-planner", "description": "Plan it"})  # tenant filled in
        assert (await acme.status(mine)).tenant_id == "acme"
        for probe in (acme.status(theirs), acme.cancel(theirs), acme.wait(theirs, 1), _first(acme, theirs)):
            with pytest.raises(JobNotFound) as info:
                await probe
            assert str(info.value) == str(JobNotFound(theirs))  # the same words as for no such job
        with pytest.raises(BadRequest, match="tenant 'acme' only"):
            await acme.submit(_request("globex-planner", "globex"))
        assert (await globex.wait(theirs, WAIT_S)).state is JobState.DONE  # untouched by the probes


async def _first(client: PlanClient, job_id: str) -> object:
    async for event in client.watch(job_id):
        return event
    return None


async def test_agent_keys_are_checked_before_preflight(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: object
) -> None:
    await _tenant(
        redis,
        settings,
        TenantRecord(tenant_id="acme"),
        "acme-planner",
        "acme-other",
        "acme-new",
        keyless=False,
    )
    admin = AgentAdmin(redis, Keys(settings.key_prefix))
    key = await admin.issue_agent_key("acme-planner", by="test")
    other_key = await admin.issue_agent_key("acme-other", by="test")
    stored = await agent_keys(redis, Keys(settings.key_prefix)).stored("acme-planner")
    assert key.startswith("pgk_") and key not in (stored or "")

    async with PlanClient.connect(settings, agent_key=key) as keyed:
        good = await keyed.wait(await keyed.submit(_request("acme-planner", "acme")), WAIT_S)
        assert good.state is JobState.DONE
        impostor = await keyed.wait(await keyed.submit(_request("acme-other", "acme")), WAIT_S)
    assert impostor.refusal and impostor.refusal.code == RefusalCode.UNAUTHENTICATED
    keyless = await client.wait(await client.submit(_request("acme-planner", "acme")), WAIT_S)
    assert keyless.refusal and keyless.refusal.code == RefusalCode.UNAUTHENTICATED
    wrong = await client.wait(
        await client.submit(_request("acme-planner", "acme", agent_key=other_key)), WAIT_S
    )
    assert wrong.refusal and wrong.refusal.code == RefusalCode.UNAUTHENTICATED
    assert key not in wrong.model_dump_json() and key not in str(
        await redis.hgetall(Keys(settings.key_prefix).job(good.job_id))
    )
    # keys are required by default: an agent with none issued cannot be claimed, with or without one
    for presented in (None, key):
        unkeyed = await client.wait(
            await client.submit(_request("acme-new", "acme", agent_key=presented)), WAIT_S
        )
        assert unkeyed.refusal and unkeyed.refusal.code == RefusalCode.UNAUTHENTICATED
        assert "issue-key acme-new" in unkeyed.refusal.reason


async def test_token_quota_refuses_and_reservations_always_settle(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    # room for exactly one job's worst case (prompt estimate + max_tokens) at a time
    await _tenant(
        redis, settings, TenantRecord(tenant_id="acme", tokens_per_day=2 * settings.max_tokens + 4000), "p"
    )
    outcomes = {}
    for model in ("scripted", "scripted-500", "scripted-cut", "scripted-invalid-json"):
        outcomes[model] = await client.wait(await client.submit(_request("p", "acme", model=model)), WAIT_S)
        account = await _account(redis, settings, "acme")
        assert account.get("reserved", 0) == 0, (model, account)  # settled, whatever the ending
    assert outcomes["scripted"].state is JobState.DONE and outcomes["scripted-500"].state is JobState.FAILED
    used = (await _account(redis, settings, "acme"))["used"]
    assert used > 0

    # a running job holds its reservation; a second one does not fit beside it
    slow = await client.submit(_request("p", "acme", model="scripted-slow"))
    deadline = time.monotonic() + WAIT_S
    while (await client.status(slow)).phase is not Phase.PLAN:
        assert time.monotonic() < deadline, "the slow job never started planning"
        await asyncio.sleep(0.02)
    account = await _account(redis, settings, "acme")
    assert account["reserved"] > 0 and account["reserved"] + account["used"] <= 2 * settings.max_tokens + 4000
    held = await redis.hgetall(Keys(settings.key_prefix).reservation(slow))  # the quota's own record of it
    assert int(held["tokens"]) == account["reserved"] and held["day"] == utc_day()
    cancelled = await client.cancel(slow)
    assert cancelled.state in (JobState.RUNNING, JobState.CANCELLED)
    assert (await client.wait(slow, WAIT_S)).state is JobState.CANCELLED
    assert (await _account(redis, settings, "acme")).get("reserved", 0) == 0
    assert await redis.exists(Keys(settings.key_prefix).reservation(slow)) == 0  # settled and gone

    # spend the day: the next job is refused, naming the limit and when it resets
    await redis.hincrby(Keys(settings.key_prefix).tenant_day("acme", utc_day()), "used", 10**6)
    refused = await client.wait(await client.submit(_request("p", "acme")), WAIT_S)
    assert refused.refusal and refused.refusal.code == RefusalCode.QUOTA_EXCEEDED
    assert "tokens_per_day" in refused.refusal.reason and "00:00 UTC" in refused.refusal.reason


async def test_a_cost_budget_without_a_price_fails_closed(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: object
) -> None:
    await _tenant(redis, settings, TenantRecord(tenant_id="acme", cost_per_day_usd=1.0), "p")
    refused = await client.wait(await client.submit(_request("p", "acme")), WAIT_S)
    assert refused.refusal and refused.refusal.code == RefusalCode.QUOTA_EXCEEDED
    assert "no price" in refused.refusal.reason


async def test_usage_is_accounted_per_tenant_agent_and_day(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, TenantRecord(tenant_id="acme"), "a1", "a2")
    statuses = await asyncio.gather(
        *[client.wait(await client.submit(_request(agent, "acme")), WAIT_S) for agent in ("a1", "a1", "a2")]
    )
    assert all(s.state is JobState.DONE for s in statuses)
    [today] = await client.usage("acme", datetime.now(UTC).date())
    reported = sum(s.output.metadata["usage"]["completion_tokens"] for s in statuses if s.output)
    assert today["jobs"] == 3 and today["completion_tokens"] == reported
    assert today["agents"]["a1"]["jobs"] == 2 and today["agents"]["a2"]["jobs"] == 1
    assert today["prompt_tokens"] == sum(
        s.output.metadata["usage"]["prompt_tokens"] for s in statuses if s.output
    )
