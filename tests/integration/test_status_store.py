"""Fencing and the terminal write against a real Redis: a stale attempt never records."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from plangate_base.vocabulary import JobState, Phase
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.queue_backend import job_queue
from worker.settings import Settings
from worker.status_store import Beat, JobRef, StatusStore

pytestmark = pytest.mark.integration


async def _queued(redis: Redis, store: StatusStore, keys: Keys, job_id: str) -> None:
    await redis.hset(keys.job(job_id), mapping=store.queued_fields("a", "t", "2026-01-01T00:00:00.000Z"))


J1, J2 = JobRef("j1", "a"), JobRef("j2", "a")


def _event(job_id: str, kind: str) -> dict:
    return ledger_event(kind, job_id=job_id, agent_id="a", tenant_id="t")


async def test_only_the_current_attempt_records_and_only_once(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    store = StatusStore(redis, keys, ttl_s=60)
    await _queued(redis, store, keys, "j1")

    first = await store.start("j1", stale_after_s=60)
    assert (await store.start("j1", stale_after_s=60)).attempt is None  # fresh heartbeat: runs elsewhere
    second = await store.start("j1", stale_after_s=-1)  # its worker went silent: a retry takes it over
    assert (first.attempt, second.attempt) == (1, 2) and (first.tries, second.tries) == (1, 2)

    assert await store.heartbeat(J1, 1, Phase.PLAN) is Beat.FENCED
    assert await store.heartbeat(J1, 2, Phase.PLAN, tokens=5) is Beat.OK
    assert not await store.record(J1, 1, JobState.DONE, _event("j1", "done"), {"output": {}})
    assert await store.record(
        J1, 2, JobState.FAILED, _event("j1", "failed"), {"error": {"type": "x", "message": "m"}}
    )
    assert not await store.record(J1, 2, JobState.DONE, _event("j1", "done"), {"output": {}})

    status = await store.read("j1")
    assert status.state is JobState.FAILED and status.attempt == 2 and status.phase is Phase.RECORD
    assert await redis.xlen(keys.ledger_stream()) == 1
    assert (await store.start("j1", stale_after_s=60)).attempt is None  # terminal: nothing to run
    assert await redis.ttl(keys.job("j1")) > 0


async def test_cancel_request_reaches_the_running_attempt(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    store = StatusStore(redis, keys, ttl_s=60)
    await _queued(redis, store, keys, "j2")
    claim = await store.start("j2", stale_after_s=60)
    assert await store.request_cancel("j2") == "running"
    assert await store.heartbeat(J2, claim.attempt or 0, Phase.PLAN) is Beat.CANCEL
    assert await store.request_cancel("missing") is None


async def test_revoked_agent_stops_the_heartbeat(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    store = StatusStore(redis, keys, ttl_s=60)
    await _queued(redis, store, keys, "j3")
    claim = await store.start("j3", "a", stale_after_s=60)
    j3 = JobRef("j3", "a")
    assert await store.heartbeat(j3, claim.attempt or 0, Phase.PLAN) is Beat.OK
    assert (await redis.hgetall(keys.agent_state("a")))["job_id"] == "j3"
    await redis.hset(keys.agent_state("a"), "revoked", "1")
    assert await store.heartbeat(j3, claim.attempt or 0, Phase.PLAN) is Beat.REVOKED


async def test_requeue_returns_the_try_and_fences_the_old_attempt(redis: Redis, settings: Settings) -> None:
    from arq.constants import in_progress_key_prefix, job_key_prefix

    keys = Keys(settings.key_prefix)
    store = StatusStore(redis, keys, ttl_s=60, queue=job_queue(settings.queue_name))
    await _queued(redis, store, keys, "j4")
    await redis.set(job_key_prefix + "j4", "{}", ex=60)
    await redis.set(in_progress_key_prefix + "j4", "1", ex=60)
    claim = await store.start("j4", "a", stale_after_s=60)
    assert claim.attempt == 1 and claim.tries == 1
    assert await store.stale(60) == []
    # the watchdog's view: nothing stale yet, so a takeover with a cutoff in the past does nothing
    assert await store.requeue("j4", 1, _event("j4", "taken_over"), stale_before_ms=0) == 0
    assert await store.requeue("j4", 1, _event("j4", "taken_over")) == 1
    assert await redis.exists(in_progress_key_prefix + "j4") == 0
    assert await redis.zscore(settings.queue_name, "j4") is not None
    assert await store.heartbeat(JobRef("j4", "a"), 1, Phase.PLAN) is Beat.FENCED
    assert not await store.record(JobRef("j4", "a"), 1, JobState.DONE, _event("j4", "done"), {"output": {}})
    again = await store.start("j4", "a", stale_after_s=60)
    assert (again.attempt, again.tries) == (2, 1)  # a new attempt, the same try
    await redis.delete(job_key_prefix + "j4", in_progress_key_prefix + "j4")
    assert await store.requeue("j4", 2, _event("j4", "taken_over")) == -1  # the arq job is gone
