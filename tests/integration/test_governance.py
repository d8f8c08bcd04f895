"""Governance enforced by a real worker against a real Redis and the scripted endpoint: the kill
switch, error budgets, locks, the agent tracker, human review and handoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from governance.live_state import AgentStateStore, LockStore
from governance.models import SEED_AGENT, ReviewerRecord
from ledger.queries import show_job
from plangate_base.vocabulary import Decision, JobState, Phase, RefusalCode
from worker.admin import AgentAdmin
from worker.client import PlanClient
from worker.errors import BadRequest, NotReviewable
from worker.keys import Keys
from worker.llm_stub.server import StubServer
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 20.0
AGENT = SEED_AGENT.agent_id


def _request(**fields: object) -> dict[str, object]:
    return {"agent_id": AGENT, "description": "Plan the index rebuild of the orders database", **fields}


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _ledger_kinds(settings: Settings, job_id: str, needed: set[str]) -> list[dict]:
    events: list[dict] = []

    async def present() -> bool:
        nonlocal events
        if not settings.ledger_path.exists():
            return False
        events = (await show_job(settings.ledger_path, job_id))["events"]
        return needed <= {e["kind"] for e in events}

    await _until(present, f"ledger events {needed} of {job_id}")
    return events


async def _agent_events(settings: Settings, kinds: set[str]) -> list[dict]:
    """Agent events (no job) straight from the ledger file."""
    import aiosqlite

    rows: list[dict] = []

    async def present() -> bool:
        nonlocal rows
        if not settings.ledger_path.exists():
            return False
        async with aiosqlite.connect(settings.ledger_path) as db:
            db.row_factory = aiosqlite.Row
            marks = ",".join("?" * len(kinds))
            cursor = await db.execute(
                f"SELECT * FROM events WHERE kind IN ({marks}) ORDER BY seq", tuple(kinds)
            )
            rows = [dict(r) for r in await cursor.fetchall()]
        return kinds <= {r["kind"] for r in rows}

    await _until(present, f"agent events {kinds}")
    return rows


async def _in_plan(client: PlanClient, job_id: str) -> None:
    async def streaming() -> bool:
        status = await client.status(job_id)
        return status.phase is Phase.PLAN and status.progress.get("tokens", 0) > 0

    await _until(streaming, f"{job_id} streaming")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A heartbeat long enough that "within 2 x HEARTBEAT_S" is not at the mercy of a busy machine.
    return settings.model_copy(update={"heartbeat_s": 0.5})


async def test_revoke_stops_a_running_stream_and_refuses_queued_jobs(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: StubServer
) -> None:
    admin = AgentAdmin(redis, Keys(settings.key_prefix))
    running = await client.submit(_request(model="scripted-slow"))
    await _in_plan(client, running)

    revoked_at = time.time()
    await admin.revoke(AGENT, reason="credentials leaked", by="alice")
    status = await client.wait(running, timeout=WAIT_S)
    assert status.state is JobState.CANCELLED and status.error is not None
    assert status.error.type == "revoked"
    finished = datetime.fromisoformat(status.finished_at.replace("Z", "+00:00")).timestamp()  # type: ignore[union-attr]
    assert finished - revoked_at <= 2 * settings.heartbeat_s
    await _until(lambda: _true(stub.open_streams == 0), "the endpoint's stream to close")
    assert stub.abandoned_streams == 1

    queued = await client.wait(await client.submit(_request()), timeout=WAIT_S)
    assert queued.state is JobState.REFUSED and queued.refusal and queued.refusal.code == RefusalCode.REVOKED
    assert "credentials leaked" in queued.refusal.reason

    await admin.restore(AGENT, by="bob", reason="keys rotated")
    assert (await client.wait(await client.submit(_request()), timeout=WAIT_S)).state is JobState.DONE

    ledger = await _ledger_kinds(settings, running, {"cancelled"})
    assert [e["reason"] for e in ledger if e["kind"] == "cancelled"] == ["revoked"]
    agent_events = await _agent_events(settings, {"revoked", "restored"})
    assert [(e["kind"], e["agent_id"], e["reason"]) for e in agent_events] == [
        ("revoked", AGENT, "credentials leaked"),
        ("restored", AGENT, "keys rotated"),
    ]
    assert '"by":"alice"' in agent_events[0]["payload"].replace(" ", "")


async def _true(value: bool) -> bool:
    return value


async def test_five_failures_spend_a_budget_of_five_until_reset(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: StubServer
) -> None:
    # invalid_output is the agent's own doing (test_deny_by_default shows the codes that are not)
    failing = await asyncio.gather(
        *(client.submit(_request(model="scripted-invalid-json")) for _ in range(5))
    )
    for status in await asyncio.gather(*(client.wait(j, timeout=WAIT_S) for j in failing)):
        assert status.state is JobState.FAILED and status.error and status.error.type == "invalid_output"

    calls = len(stub.requests)
    sixth = await client.wait(await client.submit(_request()), timeout=WAIT_S)
    assert sixth.state is JobState.REFUSED and sixth.refusal
    assert sixth.refusal.code == RefusalCode.ERROR_BUDGET_EXHAUSTED
    assert len(stub.requests) == calls  # refused before any LLM call

    state = await AgentStateStore(redis, Keys(settings.key_prefix)).read(SEED_AGENT)
    assert state.suspended and state.recent_errors == 5

    await AgentAdmin(redis, Keys(settings.key_prefix)).reset_budget(AGENT, by="carol")
    assert (await client.wait(await client.submit(_request()), timeout=WAIT_S)).state is JobState.DONE
    events = await _agent_events(settings, {"suspended", "budget_reset"})
    assert [e["kind"] for e in events] == ["suspended", "budget_reset"]  # suspended exactly once


async def test_a_held_lock_refuses_or_makes_the_next_job_wait(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    locks = LockStore(redis, Keys(settings.key_prefix))
    first = await client.submit(_request(model="scripted-slow", locks=["db/orders"]))
    await _in_plan(client, first)
    assert [(h.resource, h.job_id) for h in await locks.holders()] == [("db/orders", first)]

    refused = await client.wait(
        await client.submit(_request(locks=["db/orders", "db/other"])), timeout=WAIT_S
    )
    assert (
        refused.state is JobState.REFUSED and refused.refusal and refused.refusal.code == RefusalCode.LOCKED
    )
    assert first in refused.refusal.reason

    waiting = await client.submit(_request(locks=["db/orders"], wait_lock_s=15))
    first_done = await client.wait(first, timeout=WAIT_S)
    after = await client.wait(waiting, timeout=WAIT_S)
    assert first_done.state is JobState.DONE and after.state is JobState.DONE
    ledger = await _ledger_kinds(settings, waiting, {"lock_wait", "done"})
    lock_wait = next(e for e in ledger if e["kind"] == "lock_wait")
    assert lock_wait["reason"] == "locked" and lock_wait["payload"]["resource"] == "db/orders"
    assert lock_wait["created_at"] < first_done.finished_at  # type: ignore[operator]
    assert await locks.holders() == []  # released at RECORD


async def test_the_tracker_shows_phase_job_and_heartbeat(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    store = AgentStateStore(redis, Keys(settings.key_prefix))
    job_id = await client.submit(_request(model="scripted-slow"))
    await _in_plan(client, job_id)
    live = await store.read(SEED_AGENT)
    assert (live.phase, live.job_id) == (Phase.PLAN, job_id) and live.heartbeat_at
    await client.wait(job_id, timeout=WAIT_S)
    after = await store.read(SEED_AGENT)
    assert (after.phase, after.job_id) == (Phase.RECORD, job_id) and after.heartbeat_at >= live.heartbeat_at


async def test_an_escalated_plan_is_reviewed_once(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    admin = AgentAdmin(redis, Keys(settings.key_prefix))
    dana_key = await admin.save_reviewer(ReviewerRecord(reviewer_id="dana"), by="test")
    erin_key = await admin.save_reviewer(ReviewerRecord(reviewer_id="erin"), by="test")
    escalated = await client.wait(
        await client.submit(_request(model="scripted-forbidden-step")), timeout=WAIT_S
    )
    plain = await client.wait(await client.submit(_request()), timeout=WAIT_S)
    assert escalated.output and escalated.output.decision is Decision.ESCALATE
    desk = await client.review_desk("dana", dana_key)
    assert [s.job_id for s in await desk.pending()] == [escalated.job_id]

    reviewed = await desk.decide(escalated.job_id, approve=True, note="terraform step done by ops")
    assert reviewed.review and (reviewed.review.decision, reviewed.review.by) == ("approved", "dana")
    assert (await client.status(escalated.job_id)).review == reviewed.review
    with pytest.raises(NotReviewable, match="already"):
        await (await client.review_desk("erin", erin_key)).decide(escalated.job_id, approve=False)
    with pytest.raises(NotReviewable, match="not an escalated plan"):
        await desk.decide(plain.job_id, approve=True)
    assert await desk.pending() == []

    ledger = await _ledger_kinds(settings, escalated.job_id, {"done", "review_approved"})
    assert [e["kind"] for e in ledger].count("review_approved") == 1
    assert "review_rejected" not in [e["kind"] for e in ledger]
    done = next(e for e in ledger if e["kind"] == "done")
    assert done["decision"] == "ESCALATE" and "forbidden_action" in done["reason"]


async def test_handoff_carries_the_earlier_plan_and_links_the_jobs(
    client: PlanClient, worker: Worker, settings: Settings, stub: StubServer
) -> None:
    first = await client.wait(await client.submit(_request()), timeout=WAIT_S)
    second_id = await client.submit(
        _request(description="Review that plan", task_type="review", handoff_from=first.job_id)
    )
    second = await client.wait(second_id, timeout=WAIT_S)
    assert second.state is JobState.DONE and second.output
    assert second.output.metadata["handoff_from"] == first.job_id
    assert first.output and first.output.plan[0].title in stub.requests[-1]["messages"][-1]["content"]
    submitted = next(
        e for e in await _ledger_kinds(settings, second_id, {"submitted"}) if e["kind"] == "submitted"
    )
    assert submitted["payload"]["handoff_from"] == first.job_id

    with pytest.raises(BadRequest, match="no such job"):
        await client.submit(_request(handoff_from="0" * 32))
    queued = await client.submit(_request(model="scripted-slow"))
    with pytest.raises(BadRequest, match="not done"):
        await client.submit(_request(handoff_from=queued))


async def test_a_dead_workers_lock_expires(redis: Redis, settings: Settings) -> None:
    """Locks live only as long as their heartbeat renews them: a crashed holder frees them by expiry."""
    locks = LockStore(redis, Keys(settings.key_prefix))
    assert await locks.acquire(["db/a", "db/b"], "dead-job", ttl_ms=200) is None
    assert await locks.acquire(["db/b", "db/c"], "next-job", ttl_ms=10_000) == "db/b"  # all or nothing
    assert await locks.holder("db/c") is None

    async def expired() -> bool:
        return await locks.acquire(["db/b"], "next-job", ttl_ms=10_000) is None

    await _until(expired, "the dead job's lock to expire")
    assert [(h.resource, h.job_id) for h in await locks.holders()] == [("db/b", "next-job")]
