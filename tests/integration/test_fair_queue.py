"""The fair queue against real Redis and real workers: weighted shares of starts across tenants, splitting
gains nothing, one tenant's order unchanged, priorities with aging, delayed starts, deadlines while queued,
pause and resume."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from governance.models import AgentRecord, TenantRecord
from governance.registry import AgentRegistry, TenantRegistry
from ledger.queries import show_job
from plangate_base.clock import ms_of, now_ms, utcnow
from plangate_base.vocabulary import TERMINAL_EVENT_KINDS, FailureCode, JobState, PauseScope
from tests.eventually import eventually
from tests.integration.workers import running_worker
from worker.client import PlanClient
from worker.errors import BadRequest
from worker.fair_queue import FairQueue
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.llm_stub.server import StubServer
from worker.queue_backend import job_queue
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 60.0
OPERATOR = "test-operator"


def _fair(redis: Redis, settings: Settings) -> FairQueue:
    return FairQueue(
        redis, Keys(settings.key_prefix), job_queue(settings.queue_name), aging_s=settings.priority_aging_s
    )


async def _tenant(
    redis: Redis, settings: Settings, tenant_id: str, *agents: str, weight: float = 1.0
) -> None:
    keys = Keys(settings.key_prefix)
    await TenantRegistry(redis, keys).put(TenantRecord(tenant_id=tenant_id, weight=weight))
    for agent_id in agents:
        record = AgentRecord(agent_id=agent_id, tenant_id=tenant_id, keyless=True)
        await AgentRegistry(redis, keys).put(record)


def _request(agent: str, tenant: str, **fields: object) -> dict[str, object]:
    return {"agent_id": agent, "tenant_id": tenant, "description": "Plan the quarterly patching", **fields}


async def _all_done(client: PlanClient, job_ids: list[str]) -> list[JobStatus]:
    return [await client.wait(job_id, timeout=WAIT_S) for job_id in job_ids]


def _start_order(statuses: list[JobStatus]) -> list[JobStatus]:
    started = [s for s in statuses if s.started_at]
    return sorted(started, key=lambda s: s.started_at or "")


@contextlib.asynccontextmanager
async def _paused_queue(redis: Redis, settings: Settings) -> AsyncIterator[None]:
    """Everything submitted inside the block waits; on leaving it the queue resumes."""
    fair = _fair(redis, settings)
    assert await fair.pause(PauseScope.ALL, "", by=OPERATOR, reason="line up the test's jobs")
    try:
        yield
    finally:
        assert await fair.resume(PauseScope.ALL, "", by=OPERATOR)


async def test_one_tenants_jobs_start_in_submit_order_as_before(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    one_slot = settings.with_changes(concurrency=1)
    async with running_worker(one_slot):
        async with _paused_queue(redis, settings):
            ids = [await client.submit(_request("llm-planner-001", "default")) for _ in range(8)]
        statuses = await _all_done(client, ids)
    assert [s.job_id for s in _start_order(statuses)] == ids
    assert all(s.state is JobState.DONE for s in statuses)


async def test_a_flooding_tenant_does_not_hold_back_another(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "flood", "flood-bot")
    await _tenant(redis, settings, "small", "small-bot")
    two_slots = settings.with_changes(concurrency=2)
    async with running_worker(two_slots):
        async with _paused_queue(redis, settings):
            flood = [await client.submit(_request("flood-bot", "flood")) for _ in range(40)]
            small = [await client.submit(_request("small-bot", "small")) for _ in range(5)]
        statuses = await _all_done(client, flood + small)
    order = [s.tenant_id for s in _start_order(statuses)]
    # Equal weights: the small tenant's 5 jobs start within the first 10 (+ a batch's slack), not after 40.
    assert max(i for i, tenant in enumerate(order) if tenant == "small") < 12, order


async def test_weights_share_starts_one_to_three(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "light", "light-bot", weight=1)
    await _tenant(redis, settings, "heavy", "heavy-bot", weight=3)
    async with running_worker(settings.with_changes(concurrency=2)):
        async with _paused_queue(redis, settings):
            ids = [await client.submit(_request("light-bot", "light")) for _ in range(30)]
            ids += [await client.submit(_request("heavy-bot", "heavy")) for _ in range(30)]
        statuses = await _all_done(client, ids)
    first = Counter(s.tenant_id for s in _start_order(statuses)[:32])
    assert 0.65 <= first["heavy"] / 32 <= 0.85, first  # 3/4 of the starts while both have work


async def test_splitting_a_backlog_over_agents_gains_nothing(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    agents = [f"split-bot-{n}" for n in range(6)]
    await _tenant(redis, settings, "split", *agents)
    await _tenant(redis, settings, "whole", "whole-bot")
    async with running_worker(settings.with_changes(concurrency=2)):
        async with _paused_queue(redis, settings):
            ids = [await client.submit(_request(agents[n % 6], "split")) for n in range(30)]
            ids += [await client.submit(_request("whole-bot", "whole")) for _ in range(30)]
        statuses = await _all_done(client, ids)
    first = Counter(s.tenant_id for s in _start_order(statuses)[:30])
    assert abs(first["split"] - first["whole"]) <= 4, first


async def test_priorities_go_first_and_an_old_low_job_is_not_overtaken(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    aging = settings.with_changes(concurrency=1, priority_aging_s=0.3)
    async with PlanClient.connect(aging) as aged:
        async with running_worker(aging):
            async with _paused_queue(redis, settings):
                old_low = await aged.submit(_request("llm-planner-001", "default", priority="low"))
                submitted = now_ms()
                # Past two aging windows, a low job counts as older than any new one.
                await eventually(lambda: now_ms() > submitted + 700, timeout_s=5, what="two aging windows")
                normal = await aged.submit(_request("llm-planner-001", "default"))
                low = await aged.submit(_request("llm-planner-001", "default", priority="low"))
                high = await aged.submit(_request("llm-planner-001", "default", priority="high"))
            statuses = await _all_done(aged, [old_low, normal, low, high])
    assert [s.job_id for s in _start_order(statuses)] == [old_low, high, normal, low]
    assert statuses[3].priority == "high"


async def test_a_delayed_job_is_queued_with_its_start_time_and_starts_no_earlier(
    client: PlanClient, settings: Settings
) -> None:
    async with running_worker(settings):
        delayed = await client.submit(_request("llm-planner-001", "default", delay_s=1.5))
        queued = await client.status(delayed)
        assert queued.state is JobState.QUEUED and queued.not_before
        at_once = await client.submit(_request("llm-planner-001", "default"))
        first = await client.wait(at_once, timeout=WAIT_S)
        assert (await client.status(delayed)).state is JobState.QUEUED  # still waiting for its time
        done = await client.wait(delayed, timeout=WAIT_S)
    assert first.state is JobState.DONE and done.state is JobState.DONE
    assert done.started_at and done.started_at >= queued.not_before


async def test_a_not_before_time_holds_the_job_until_then(client: PlanClient, settings: Settings) -> None:
    async with running_worker(settings):
        start = utcnow() + timedelta(seconds=1)
        job_id = await client.submit(_request("llm-planner-001", "default", not_before=start.isoformat()))
        done = await client.wait(job_id, timeout=WAIT_S)
    assert done.state is JobState.DONE and done.started_at and done.started_at >= (done.not_before or "")


async def _terminal_records(settings: Settings, job_id: str) -> list[dict]:
    async def recorded() -> list[dict] | None:
        if not settings.ledger_path.exists():
            return None
        events = (await show_job(settings.ledger_path, job_id))["events"]
        ended = [e for e in events if e["kind"] in TERMINAL_EVENT_KINDS]
        return ended or None

    return await eventually(recorded, timeout_s=WAIT_S, interval_s=0.05, what=f"{job_id}'s end in the ledger")


async def test_jobs_past_their_deadline_while_queued_fail_once_with_two_workers_racing(
    client: PlanClient, redis: Redis, settings: Settings, stub: StubServer
) -> None:
    keys = Keys(settings.key_prefix)
    await _tenant(redis, settings, "late", "late-bot")
    async with running_worker(settings), running_worker(settings):
        async with _paused_queue(redis, settings):
            soon = (utcnow() + timedelta(milliseconds=400)).isoformat()
            ids = [await client.submit(_request("late-bot", "late", deadline=soon)) for _ in range(12)]
            # Half expire while paused (the watchdogs), half once resumed (the pipeline's own check).
            await eventually(
                lambda: _count_failed(client, ids[:6]), timeout_s=WAIT_S, what="the watchdogs to end them"
            )
        statuses = await _all_done(client, ids)
        # (read while the workers run: their ledger writer drains the stream into the file)
        ends = {job_id: await _terminal_records(settings, job_id) for job_id in ids}
    for status in statuses:
        assert status.state is JobState.FAILED, status
        assert status.error and status.error.type == FailureCode.DEADLINE_EXCEEDED
        assert len(ends[status.job_id]) == 1
        assert not await redis.exists(keys.reservation(status.job_id))
    assert not [r for r in stub.requests if "late" in str(r)]  # no LLM call
    assert await redis.zcard(keys.tenant_running("late")) == 0
    assert await redis.zcard(keys.fair_deadlines()) == 0 and await redis.hlen(keys.fair_jobs()) == 0


async def _count_failed(client: PlanClient, ids: list[str]) -> bool:
    states = [(await client.status(job_id)).state for job_id in ids]
    return all(state is JobState.FAILED for state in states)


async def test_a_paused_tenant_never_starts_while_paused_and_all_start_after_resume(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "held", "held-bot")
    await _tenant(redis, settings, "free", "free-bot")
    fair = _fair(redis, settings)
    assert await fair.pause(PauseScope.TENANT, "held", by=OPERATOR, reason="noisy neighbour")
    async with running_worker(settings), running_worker(settings):
        held = [await client.submit(_request("held-bot", "held")) for _ in range(6)]
        free = [await client.submit(_request("free-bot", "free")) for _ in range(6)]
        assert all(s.state is JobState.DONE for s in await _all_done(client, free))
        for job_id in held:
            status = await client.status(job_id)
            assert status.state is JobState.QUEUED and status.attempt == 0
        resumed_at = now_ms()
        assert await fair.resume(PauseScope.TENANT, "held", by=OPERATOR, reason="calm again")
        statuses = await _all_done(client, held)
        events = await _pause_events(settings, "held")  # (while the workers' ledger writer runs)
    assert all(s.state is JobState.DONE for s in statuses)
    first_start = min(s.started_at or "" for s in statuses)
    assert first_start  # and within a second of the resume:
    assert ms_of(first_start) - resumed_at < 1000
    assert [(e["kind"], e["reason"], e["payload"]["by"]) for e in events] == [
        ("paused", "noisy neighbour", OPERATOR),
        ("resumed", "calm again", OPERATOR),
    ]


async def test_a_paused_agent_waits_while_its_tenants_other_agents_run(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    await _tenant(redis, settings, "acme", "acme-held", "acme-free")
    fair = _fair(redis, settings)
    assert await fair.pause(PauseScope.AGENT, "acme-held", by=OPERATOR, reason="under review")
    async with running_worker(settings):
        held = [await client.submit(_request("acme-held", "acme")) for _ in range(4)]
        free = [await client.submit(_request("acme-free", "acme")) for _ in range(4)]
        assert all(s.state is JobState.DONE for s in await _all_done(client, free))
        assert [(await client.status(j)).state for j in held] == [JobState.QUEUED] * 4
        assert await fair.resume(PauseScope.AGENT, "acme-held", by=OPERATOR)
        assert all(s.state is JobState.DONE for s in await _all_done(client, held))


async def _pause_events(settings: Settings, tenant_id: str) -> list[dict]:
    from ledger.queries import EventFilter, read_only, tail

    async def both() -> list[dict] | None:
        if not settings.ledger_path.exists():
            return None
        async with read_only(settings.ledger_path) as conn:
            rows = await tail(conn, EventFilter(tenant_id=tenant_id), 100)
        found = sorted((r for r in rows if r["kind"] in ("paused", "resumed")), key=lambda r: r["created_at"])
        return found if len(found) == 2 else None

    return await eventually(both, timeout_s=WAIT_S, what="the pause and resume in the ledger")


async def test_stats_and_metrics_show_each_tenants_queue(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    from prometheus_client import REGISTRY

    from worker.cli.stats import collect_stats
    from worker.metrics import refresh_queue_gauges

    await _tenant(redis, settings, "busy", "busy-bot")
    await _tenant(redis, settings, "waiting", "waiting-bot")
    fair = _fair(redis, settings)
    assert await fair.pause(PauseScope.TENANT, "waiting", by=OPERATOR, reason="stats")
    async with running_worker(settings):
        done = [await client.submit(_request("busy-bot", "busy")) for _ in range(4)]
        await _all_done(client, done)
        for _ in range(3):
            await client.submit(_request("waiting-bot", "waiting"))
        await client.submit(_request("busy-bot", "busy", delay_s=600))
        stats = await collect_stats(redis, settings)
        await refresh_queue_gauges(redis, settings)
    busy, waiting = stats["tenants"]["busy"], stats["tenants"]["waiting"]
    assert (waiting["queued"], waiting["running"], waiting["paused"]) == (3, 0, True)
    assert waiting["oldest_queued_age_s"] is not None and waiting["oldest_queued_age_s"] >= 0
    assert (busy["queued"], busy["starts_last_minute"], busy["share_of_starts"]) == (0, 4, 1.0)
    assert stats["queue_delayed"] == 1 and stats["paused"] == ["tenant:waiting"]
    assert REGISTRY.get_sample_value("plangate_tenant_queued", {"tenant": "waiting"}) == 3
    assert REGISTRY.get_sample_value("plangate_tenant_start_share", {"tenant": "busy"}) == 1.0


async def test_jobs_queued_without_a_place_in_the_fair_queue_are_adopted_at_worker_start(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    ids = [await client.submit(_request("llm-planner-001", "default", priority="high")) for _ in range(3)]
    for job_id in ids:  # as a plangate before the fair queue (or a producer not upgraded) left them
        await redis.hdel(keys.fair_jobs(), job_id)
        await redis.zrem(keys.fair_ready("default"), job_id)
    async with running_worker(settings):
        statuses = await _all_done(client, ids)
    assert [s.state for s in statuses] == [JobState.DONE] * 3


async def test_pausing_a_tenant_or_agent_that_does_not_exist_is_refused(
    redis: Redis, settings: Settings
) -> None:
    fair = _fair(redis, settings)
    for scope, target in ((PauseScope.TENANT, "no-such-tenant"), (PauseScope.AGENT, "no-such-agent")):
        with pytest.raises(BadRequest, match=f"no {scope.value} with id 'no-such-"):
            await fair.pause(scope, target, by=OPERATOR, reason="a typo")
    assert await fair.paused() == {}
