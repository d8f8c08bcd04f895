"""Queued jobs arq cannot start (payload gone, empty, not a plan call, try counter absurd or not a
number) end `failed` with a typed code and one ledger record, instead of `queued` forever."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis

from ledger.queries import show_job
from plangate_base import codec
from plangate_base.vocabulary import TERMINAL_STATES, FailureCode, JobState
from tests.eventually import eventually
from tests.integration.workers import running_worker
from worker.client import PlanClient
from worker.keys import Keys
from worker.queue_backend.arq_payload import JOB_FUNCTION
from worker.settings import Settings
from worker.worker_app import stop_worker

pytestmark = pytest.mark.integration

WAIT_S = 20.0
JOB = {"agent_id": "llm-planner-001", "description": "Plan a certificate rotation"}
_TERMINAL = {s.value for s in TERMINAL_STATES}

Corrupt = Callable[[Redis, str], Awaitable[object]]

VARIANTS: dict[str, tuple[Corrupt, FailureCode, str]] = {
    "payload deleted": (
        lambda r, j: r.delete(job_key_prefix + j),
        FailureCode.PAYLOAD_LOST,
        "gone",
    ),
    "payload empty": (
        lambda r, j: r.set(job_key_prefix + j, b"", keepttl=True),
        FailureCode.PAYLOAD_LOST,
        "empty",
    ),
    "payload garbage": (
        lambda r, j: r.set(job_key_prefix + j, b"\x80\x04\x95garbage\xff\x00", keepttl=True),
        FailureCode.PAYLOAD_UNREADABLE,
        "not JSON",
    ),
    "payload of another function": (
        lambda r, j: r.set(job_key_prefix + j, codec.dumps({"f": "rm", "a": [], "k": {}, "t": 1, "et": 0})),
        FailureCode.PAYLOAD_UNREADABLE,
        "unknown job function 'rm'",
    ),
    "try counter huge": (
        lambda r, j: r.set(retry_key_prefix + j, 10**12),
        FailureCode.PAYLOAD_UNREADABLE,
        "arq counts 1000000000001 tries",
    ),
    "try counter at the integer limit": (
        lambda r, j: r.set(retry_key_prefix + j, 2**63 - 1),  # arq's INCR overflows: a Redis error
        FailureCode.PAYLOAD_UNREADABLE,
        f"arq counts {2**63 - 1} tries",
    ),
    "try counter not a number": (
        lambda r, j: r.set(retry_key_prefix + j, "many"),  # arq's INCR fails: a Redis error
        FailureCode.PAYLOAD_UNREADABLE,
        "not a number ('many')",
    ),
}


@pytest.fixture
async def raw_redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    """A bytes client, to write what a text client cannot (bytes that are not UTF-8)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _ledger_events(settings: Settings, job_id: str, kind: str) -> list[dict]:
    """The job's ledger events once one of `kind` is there (poll with a deadline)."""

    async def held() -> list[dict] | None:
        if settings.ledger_path.exists():
            events = (await show_job(settings.ledger_path, job_id))["events"]
            if kind in {e["kind"] for e in events}:
                return events
        return None

    return await eventually(
        held, timeout_s=WAIT_S, interval_s=0.05, what=f"the ledger to hold {kind} for {job_id}"
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_a_queued_job_arq_cannot_start_ends_failed_once(
    variant: str, client: PlanClient, redis: Redis, raw_redis: Redis, settings: Settings
) -> None:
    corrupt, code, message = VARIANTS[variant]
    job_id = await client.submit(JOB)  # no worker runs yet
    await corrupt(raw_redis, job_id)

    async with running_worker(settings):
        status = await client.wait(job_id, timeout=WAIT_S)
        assert status.state is JobState.FAILED and status.error is not None, status
        assert status.error.type == code.value and message in status.error.message, status.error
        # The worker lives on: a good job behind it is done, and its ledger record comes after ours.
        good = await client.submit(JOB)
        assert (await client.wait(good, timeout=WAIT_S)).state is JobState.DONE
        await _ledger_events(settings, good, JobState.DONE.value)

    events = await _ledger_events(settings, job_id, JobState.FAILED.value)
    terminal = [e for e in events if e["kind"] in _TERMINAL]
    assert len(terminal) == 1 and terminal[0]["reason"] == code.value, terminal
    assert terminal[0]["agent_id"] == "llm-planner-001" and terminal[0]["tenant_id"] == "default"
    assert (await client.status(job_id)).state is JobState.FAILED  # still, after the worker stopped
    assert await redis.zscore(settings.queue_name, job_id) is None  # arq's entry and keys are gone
    assert await redis.exists(job_key_prefix + job_id, retry_key_prefix + job_id) == 0
    assert await redis.zscore(Keys(settings.key_prefix).failed(), job_id) is not None  # dead letters


async def test_a_handed_back_job_whose_payload_is_lost_releases_its_lock(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    """A job handed back at shutdown still holds its lock; failing it while queued releases it."""
    keys = Keys(settings.key_prefix)
    job_id = await client.submit({**JOB, "model": "scripted-slow", "locks": ["db-main"]})

    async def locked() -> bool:
        return (await client.status(job_id)).phase is not None and await redis.get(
            keys.lock("db-main")
        ) is not None

    # A job's locks expire 5 heartbeats after their last renewal (1 s in the tests' settings): a loaded
    # machine can take that long between the hand-back and the check, so this test's locks live longer.
    lasting = settings.with_changes(heartbeat_s=5.0)
    async with running_worker(lasting) as first:
        await eventually(locked, timeout_s=WAIT_S, what="the job to take its lock")
        await stop_worker(first, grace_s=0)  # hands the job back to the queue
    assert (await client.status(job_id)).state is JobState.QUEUED
    assert await redis.get(keys.lock("db-main")) == job_id
    await redis.delete(job_key_prefix + job_id, in_progress_key_prefix + job_id)

    async with running_worker(lasting):  # its ledger writer drains the terminal event while it runs
        status = await client.wait(job_id, timeout=WAIT_S)
        events = await _ledger_events(settings, job_id, JobState.FAILED.value)
    assert status.state is JobState.FAILED and status.error and status.error.type == FailureCode.PAYLOAD_LOST
    assert await redis.get(keys.lock("db-main")) is None
    assert [e["kind"] for e in events if e["kind"] in _TERMINAL] == [JobState.FAILED.value]


async def test_a_plan_call_with_a_broken_request_is_still_refused_bad_request(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    """The other side of the line: a well-formed plan call reaches the pipeline, which refuses it."""
    job_id = await client.submit(JOB)  # no worker runs yet
    payload = {"t": None, "f": JOB_FUNCTION, "a": [job_id, ["not", "a", "request"]], "k": {}, "et": 0}
    await redis.set(job_key_prefix + job_id, codec.dumps(payload), keepttl=True)
    async with running_worker(settings):
        status = await client.wait(job_id, timeout=WAIT_S)
    assert status.state is JobState.REFUSED and status.refusal and status.refusal.code == "bad_request"
