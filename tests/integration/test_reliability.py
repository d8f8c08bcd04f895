"""Abandoned jobs, tries, the dead-letter view and the health check, in one process against real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.asyncio import Redis

from ledger.queries import show_job
from plangate_base.vocabulary import JobState
from worker.client import PlanClient
from worker.errors import BadRequest
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.queue_backend import job_queue
from worker.settings import Settings
from worker.status_store import JobRef, StatusStore

pytestmark = pytest.mark.integration

WAIT_S = 20.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"heartbeat_s": 0.2, "heartbeat_timeout_s": 1.0, "job_tries": 2})


def _request(**fields: object) -> dict[str, object]:
    return {"agent_id": "llm-planner-001", "description": "Plan a certificate rotation", **fields}


async def _abandon(
    redis: Redis, settings: Settings, job_id: str, agent_id: str = "llm-planner-001"
) -> StatusStore:
    """Play a worker that claimed the job and died: arq's in-progress mark, our attempt 1, silence."""
    store = StatusStore(redis, Keys(settings.key_prefix), ttl_s=60, queue=job_queue(settings.queue_name))
    await redis.set(in_progress_key_prefix + job_id, "1", ex=300)
    claim = await store.start(job_id, agent_id, stale_after_s=settings.stale_after_s)
    assert claim.attempt == 1
    return store


async def test_an_abandoned_job_is_taken_over_within_the_heartbeat_timeout(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    from worker.worker_app import build_worker, stop_worker

    job_id = await client.submit(_request())
    store = await _abandon(redis, settings, job_id)  # before any live worker could pick it up
    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        await _until_alive(client, settings)  # recovery is measured from a live worker's start
        abandoned_at = time.monotonic()
        status = await client.wait(job_id, timeout=WAIT_S)
        recovered_in = time.monotonic() - abandoned_at
        deadline = time.monotonic() + WAIT_S  # the ledger, while its writer still runs
        while True:
            kinds = [e["kind"] for e in (await show_job(settings.ledger_path, job_id))["events"]]
            if "done" in kinds:
                break
            assert time.monotonic() < deadline, kinds
            await asyncio.sleep(0.05)
    finally:
        await stop_worker(worker)
        task.cancel()
    assert status.state is JobState.DONE and status.attempt == 2
    assert recovered_in < settings.stale_after_s + 5
    assert (await store.fields(job_id, "tries"))["tries"] == "1"  # the takeover gave the try back

    # the first attempt, had it only been slow, can no longer record
    late = ledger_event("done", job_id=job_id, agent_id="llm-planner-001", tenant_id="default")
    assert not await store.record(JobRef(job_id, "llm-planner-001"), 1, JobState.DONE, late, {"output": {}})

    assert kinds.count("taken_over") == 1 and kinds.count("done") == 1


async def test_tries_are_counted_and_exhausted_jobs_fail_into_the_dead_letter_view(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    job_id = await client.submit(_request())
    await redis.hset(keys.job(job_id), "tries", settings.job_tries)  # as if every try had been spent
    status = await client.wait(job_id, timeout=WAIT_S)
    assert status.state is JobState.FAILED and status.error and status.error.type == "tries_exhausted"

    assert [s.job_id for s in await client.failed()] == [job_id]
    retried = await client.retry(job_id)
    again = await client.wait(retried, timeout=WAIT_S)
    assert again.state is JobState.DONE and retried != job_id
    assert await client.failed() == []
    with pytest.raises(BadRequest, match="only failed jobs"):
        await client.retry(retried)
    deadline = time.monotonic() + WAIT_S  # the ledger writer commits in batches: poll for it
    while not (
        events := [
            e for e in (await show_job(settings.ledger_path, retried))["events"] if e["kind"] == "submitted"
        ]
    ):
        assert time.monotonic() < deadline, "the retried job's submission never reached the ledger"
        await asyncio.sleep(0.05)
    submitted = events[0]
    assert submitted["payload"]["retry_of"] == job_id


async def _until_alive(client: PlanClient, settings: Settings) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await client.healthy_workers(settings.liveness_window_s):
        assert time.monotonic() < deadline, "the worker never beat"
        await asyncio.sleep(0.05)


async def test_health_sees_a_live_worker(client: PlanClient, worker: Worker, settings: Settings) -> None:
    await _until_alive(client, settings)
    assert await client.healthy_workers(0.0) <= 1


async def test_a_job_whose_picking_worker_died_before_start_is_freed(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    """arq marked the job in progress, then its worker died before our START: the job is still
    `queued` but hidden by arq's mark for the job timeout plus 20 s, unless the watchdog frees it."""
    from worker.worker_app import build_worker, stop_worker

    job_id = await client.submit(_request())
    mark_ttl_ms = int(job_queue(settings.queue_name).claim_ttl_s(settings.job_timeout_s) * 1000)
    await redis.set(in_progress_key_prefix + job_id, "1", px=mark_ttl_ms - 3_000)  # marked 3 s ago
    await redis.zadd(settings.queue_name, {job_id: int(time.time() * 1000) - 3_000})
    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        status = await client.wait(job_id, timeout=WAIT_S)  # arq alone: ~300 s
    finally:
        await stop_worker(worker)
        task.cancel()
    assert status.state is JobState.DONE and status.attempt == 1


async def test_an_abandoned_job_without_its_payload_fails_and_settles_its_own_tenants_quota(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    from arq.constants import job_key_prefix

    from governance.models import AgentRecord, TenantRecord
    from governance.quota import QuotaStore, Reservation
    from governance.registry import AgentRegistry, TenantRegistry
    from plangate_base.clock import utc_day
    from worker.worker_app import build_worker, stop_worker

    keys = Keys(settings.key_prefix)
    acme = TenantRecord(tenant_id="acme", tokens_per_day=100_000)
    await TenantRegistry(redis, keys).put(acme)
    await AgentRegistry(redis, keys).put(AgentRecord(agent_id="acme-planner", tenant_id="acme", keyless=True))
    job_id = await client.submit(_request(agent_id="acme-planner", tenant_id="acme"))
    await _abandon(redis, settings, job_id, agent_id="acme-planner")
    day = utc_day()
    refusal = await QuotaStore(redis, keys).admit(
        acme, job_id, Reservation(5_000, 0.0, 100), price=None, day=day, stale_ms=600_000
    )
    assert refusal is None and (await redis.hget(keys.tenant_day("acme", day), "reserved")) == "5000"
    await redis.delete(job_key_prefix + job_id)  # the payload is gone: nothing left to run

    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        status = await client.wait(job_id, timeout=WAIT_S)
    finally:
        await stop_worker(worker)
        task.cancel()
    assert status.state is JobState.FAILED and status.error and status.error.type == "abandoned"
    assert (await redis.hget(keys.tenant_day("acme", day), "reserved")) == "0"
    assert await redis.exists(keys.tenant_day("default", day)) == 0  # no other tenant's account touched
