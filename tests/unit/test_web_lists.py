"""The live view's "Queued" list over fakeredis: only jobs waiting for a worker, even when more jobs
run than the list shows (arq's queue holds running jobs and deferred retries too)."""

from __future__ import annotations

import fakeredis
from redis.asyncio import Redis

from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings
from worker.status_store import StatusStore
from worker.web.live_view import LIST_LIMIT, LiveView

JOB = {"agent_id": "llm-planner-001", "description": "Plan the list check"}


async def test_queued_lists_the_waiting_jobs_behind_more_running_ones_than_a_page() -> None:
    redis: Redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    settings = Settings(key_prefix="unit-web:", ledger_path="/nonexistent/ledger.db")
    client = PlanClient(redis, settings)
    store = StatusStore(redis, Keys(settings.key_prefix), ttl_s=60, worker_name="w:1")
    submitted = [await client.submit(JOB) for _ in range(LIST_LIMIT + 5)]
    running, waiting = submitted[: LIST_LIMIT + 2], submitted[LIST_LIMIT + 2 :]
    for job_id in running:  # what a worker's START does to each job it picks
        assert (await store.start(job_id, "llm-planner-001", stale_after_s=10)).attempt == 1
    retry = await client.submit(JOB)
    await redis.zincrby(settings.queue_name, 600_000, retry)  # deferred, as arq's Retry(defer=600)

    jobs = await LiveView(redis, settings).jobs()

    # in the order a worker would take them: arq's score (enqueue ms), ties broken by job id
    in_queue_order = [j for j in await redis.zrange(settings.queue_name, 0, -1) if j in set(waiting)]
    assert sorted(in_queue_order) == sorted(waiting)
    assert [row["job_id"] for row in jobs["queued"]] == in_queue_order
    assert {row["state"] for row in jobs["queued"]} == {"queued"}
    assert len(jobs["running"]) == LIST_LIMIT
