"""What a job costs in Redis round trips (issue 20): PREFLIGHT's governance reads share one, and the queue
claims a job in one (a script) instead of arq's WATCH, EXISTS, ZSCORE and MULTI/EXEC; both with the same
answers as before (an agent's error-budget window read from its record, a job claimed only once and only
when due)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from governance.models import SEED_AGENT, AgentRecord
from governance.registry import AgentRegistry
from plangate_base.clock import now_ms
from plangate_base.vocabulary import RefusalCode
from tests.integration.workers import bare_worker
from worker.job_run import JobContext, Refused
from worker.keys import Keys
from worker.pipeline import Pipeline
from worker.queue_backend import job_queue
from worker.queue_backend.arq_payload import JOB_FUNCTION, decode_job, encode_job
from worker.settings import Settings
from worker.status_store import StatusStore

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts what every client of this process sends: one send per command or pipeline (a round trip)."""
    sent = [0]
    send = Connection.send_packed_command

    async def counted(self: Connection, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        await send(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(Connection, "send_packed_command", counted)
        yield sent


def _pipeline(settings: Settings, redis: Redis) -> Pipeline:
    keys = Keys(settings.key_prefix)
    status = StatusStore(redis, keys, ttl_s=60)
    return Pipeline(settings, redis, status, AgentRegistry(redis, keys), planner=None)  # type: ignore[arg-type]


def _request(agent_id: str = SEED_AGENT.agent_id) -> dict[str, Any]:
    return {"agent_id": agent_id, "description": "Plan the index rebuild of the orders database"}


async def test_preflight_reads_what_governance_decides_on_in_one_round_trip(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _pipeline(settings, redis)
    await pipeline.preflight_phase.check(JobContext("warm-up", 1, SEED_AGENT.agent_id, "default"), _request())
    with round_trips(monkeypatch) as sent:
        admitted = await pipeline.preflight_phase.check(
            JobContext("job-1", 1, SEED_AGENT.agent_id, "default"), _request()
        )
    assert admitted.agent.agent_id == SEED_AGENT.agent_id and admitted.tenant.tenant_id == "default"
    assert sent[0] == 2  # the reads, then the quota's admission (a script)


async def test_failures_are_counted_over_the_window_the_agents_record_names(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    agent = AgentRecord.model_validate(
        {
            **SEED_AGENT.model_dump(),
            "agent_id": "short-window",
            "keyless": True,
            "error_budget_window_s": 60,
            "error_budget_limit": 1,
        }
    )
    await AgentRegistry(redis, keys).put(agent)
    # A failure two minutes ago: outside this agent's 60 s window, inside the default hour.
    await redis.zadd(keys.agent_errors(agent.agent_id), {"old-failure": now_ms() - 120_000})
    pipeline = _pipeline(settings, redis)
    for n in range(2):  # the first job learns the window, the second reads with it
        job = JobContext(f"job-{n}", 1, agent.agent_id, "default")
        admitted = await pipeline.preflight_phase.check(job, _request(agent.agent_id))
        assert admitted.agent.agent_id == agent.agent_id
    await redis.zadd(keys.agent_errors(agent.agent_id), {"new-failure": now_ms() - 1_000})
    with pytest.raises(Refused) as refused:
        await pipeline.preflight_phase.check(
            JobContext("job-3", 1, agent.agent_id, "default"), _request(agent.agent_id)
        )
    assert refused.value.refusal.code == RefusalCode.ERROR_BUDGET_EXHAUSTED


@contextlib.asynccontextmanager
async def _worker(settings: Settings) -> Any:
    pool: ArqRedis = await create_pool(
        RedisSettings.from_dsn(settings.redis_url),
        job_serializer=encode_job,
        job_deserializer=decode_job,
        default_queue_name=settings.queue_name,
    )
    ran: list[str] = []

    async def plan_job(ctx: dict[str, Any], *args: Any) -> str:
        ran.append(ctx["job_id"])
        return "done"

    worker = bare_worker(settings, pool, func(plan_job, name=JOB_FUNCTION), max_jobs=4)
    try:
        yield worker, pool, ran
    finally:
        await pool.aclose(close_connection_pool=True)


async def _enqueue(pool: ArqRedis, settings: Settings, job_id: str, score_ms: int) -> None:
    queue = job_queue(settings.queue_name)
    async with pool.pipeline(transaction=True) as pipe:
        queue.add_enqueue(pipe, job_id, _request(), enqueue_ms=score_ms, ttl_s=60)
        await pipe.execute()


async def test_a_job_is_claimed_in_one_round_trip_once_and_only_when_due(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = job_queue(settings.queue_name)
    async with _worker(settings) as (worker, pool, ran):
        await _enqueue(pool, settings, "due", now_ms() - 10)
        await _enqueue(pool, settings, "later", now_ms() + 60_000)  # re-enqueued with a delay
        await _enqueue(pool, settings, "elsewhere", now_ms() - 10)
        await pool.psetex(queue.claim_key("elsewhere"), 60_000, b"1")  # another worker runs it
        await worker.start_jobs([b"warm-up-not-queued"])  # (loads the script)
        with round_trips(monkeypatch) as sent:
            await worker.start_jobs([b"due"])
        assert sent[0] == 1
        first = worker.tasks["due"]
        ttl_ms = await pool.pttl(queue.claim_key("due"))
        assert 0 < ttl_ms <= int(worker.in_progress_timeout_s * 1000)
        await worker.start_jobs([b"later", b"elsewhere", b"gone", b"due"])  # "due" is claimed already
        assert worker.tasks == {"due": first}
        await first
        assert ran == ["due"] and worker.job_counter == 0
        assert await pool.zscore(queue.queue_key, "due") is None  # finished: arq's own bookkeeping ran
        assert await pool.exists(queue.claim_key("later")) == 0
