"""Bulk cancel and retry by filter against real Redis and real workers: a dry run only counts, a cancel that
races with workers picking the same jobs ends every job exactly once, dead letters are retried as new jobs."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from governance.models import AgentRecord, TenantRecord
from governance.registry import AgentRegistry, TenantRegistry
from ledger.queries import show_job
from plangate_base.vocabulary import TERMINAL_EVENT_KINDS, CancelReason, JobState, PauseScope
from tests.eventually import eventually
from tests.integration.workers import running_worker
from worker.bulk_ops import BulkOps, JobFilter
from worker.client import PlanClient
from worker.fair_queue import FairQueue
from worker.keys import Keys
from worker.queue_backend import job_queue
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 60.0


async def _tenant(redis: Redis, settings: Settings, tenant_id: str, *agents: str) -> None:
    keys = Keys(settings.key_prefix)
    await TenantRegistry(redis, keys).put(TenantRecord(tenant_id=tenant_id))
    for agent_id in agents:
        record = AgentRecord(agent_id=agent_id, tenant_id=tenant_id, keyless=True)
        await AgentRegistry(redis, keys).put(record)


def _request(agent: str, tenant: str, **fields: object) -> dict[str, object]:
    return {"agent_id": agent, "tenant_id": tenant, "description": "Plan the quarterly patching", **fields}


def _ops(client: PlanClient, settings: Settings) -> BulkOps:
    return BulkOps(client, client.redis, Keys(settings.key_prefix))


async def _ends(settings: Settings, job_id: str) -> list[dict]:
    async def ended() -> list[dict] | None:
        if not settings.ledger_path.exists():
            return None
        events = (await show_job(settings.ledger_path, job_id))["events"]
        return [e for e in events if e["kind"] in TERMINAL_EVENT_KINDS] or None

    return await eventually(ended, timeout_s=WAIT_S, interval_s=0.05, what=f"{job_id}'s end in the ledger")


async def test_a_dry_run_counts_and_touches_nothing(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "acme", "acme-a", "acme-b")
    await _tenant(redis, settings, "other", "other-a")
    ids_a = [await client.submit(_request("acme-a", "acme")) for _ in range(4)]
    ids_b = [await client.submit(_request("acme-b", "acme")) for _ in range(3)]
    others = [await client.submit(_request("other-a", "other")) for _ in range(2)]
    ops = _ops(client, settings)
    assert len((await ops.cancel(JobFilter(tenant_id="acme"), dry_run=True)).matched) == 7
    assert sorted((await ops.cancel(JobFilter(agent_id="acme-b"), dry_run=True)).matched) == sorted(ids_b)
    assert (await ops.cancel(JobFilter(older_than_s=3600), dry_run=True)).matched == []
    for job_id in ids_a + ids_b + others:
        assert (await client.status(job_id)).state is JobState.QUEUED
    result = await ops.cancel(JobFilter(tenant_id="acme", agent_id="acme-a"), dry_run=False)
    assert sorted(result.changed) == sorted(ids_a)
    for job_id in ids_a:
        status = await client.status(job_id)
        assert status.state is JobState.CANCELLED and status.error
        assert status.error.type == CancelReason.BY_OPERATOR
    untouched = [(await client.status(j)).state for j in ids_b + others]
    assert untouched == [JobState.QUEUED] * len(untouched)


async def test_a_bulk_cancel_racing_workers_ends_every_job_exactly_once(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "race", "race-bot")
    fair = FairQueue(redis, Keys(settings.key_prefix), job_queue(settings.queue_name), aging_s=60)
    async with running_worker(settings), running_worker(settings):
        await fair.pause(PauseScope.TENANT, "race", by="test", reason="line up the jobs")
        ids = [await client.submit(_request("race-bot", "race")) for _ in range(40)]
        await fair.resume(PauseScope.TENANT, "race", by="test")  # the workers start picking them ...
        result = await _ops(client, settings).cancel(  # ... while the cancel goes through them
            JobFilter(tenant_id="race"), states=frozenset({JobState.QUEUED, JobState.RUNNING}), dry_run=False
        )
        statuses = [await client.wait(job_id, timeout=WAIT_S) for job_id in ids]
        # (read while the workers run: their ledger writer drains the stream into the file)
        ends = {status.job_id: await _ends(settings, status.job_id) for status in statuses}
    states = {s.state for s in statuses}
    assert states <= {JobState.DONE, JobState.CANCELLED}, states
    assert result.changed  # the cancel won some of the races
    for status in statuses:
        mine = ends[status.job_id]
        assert len(mine) == 1 and mine[0]["kind"] == status.state.value, (status, mine)
    assert await redis.hlen(Keys(settings.key_prefix).fair_jobs()) == 0


async def test_dead_letters_are_retried_as_new_jobs_by_filter(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "acme", "acme-a", "acme-b")
    async with running_worker(settings):
        failing = [await client.submit(_request("acme-a", "acme", model="scripted-402")) for _ in range(3)]
        failing += [await client.submit(_request("acme-b", "acme", model="scripted-402"))]
        for job_id in failing:
            assert (await client.wait(job_id, timeout=WAIT_S)).state is JobState.FAILED
        ops = _ops(client, settings)
        dry = await ops.retry(JobFilter(agent_id="acme-a"), dry_run=True)
        assert sorted(dry.matched) == sorted(failing[:3]) and not dry.created
        result = await ops.retry(JobFilter(agent_id="acme-a"), dry_run=False)
        assert len(result.created) == 3
        for new_id in result.created:
            status = await client.wait(new_id, timeout=WAIT_S)
            assert status.agent_id == "acme-a"
            request = await client.redis.hget(Keys(settings.key_prefix).job(new_id), "request")
            assert request and any(old in request for old in failing[:3])  # retry_of the old job
    assert (await ops.retry(JobFilter(agent_id="acme-b"), dry_run=True)).matched == [failing[3]]
