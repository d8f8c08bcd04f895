"""The whole job path in one process against a real Redis: submit, the four phases, RECORD, ledger."""

from __future__ import annotations

import asyncio
import time

import pytest
from arq.constants import job_key_prefix
from arq.worker import Worker
from redis.asyncio import Redis

from ledger.queries import show_job
from plangate_base import codec
from plangate_base.vocabulary import Decision, JobState, Phase, RefusalCode
from worker.client import PlanClient
from worker.errors import BadRequest, JobNotFound, NotCancellable, WaitTimeout
from worker.keys import Keys
from worker.llm_stub.server import StubServer
from worker.queue_backend.arq_payload import JOB_FUNCTION
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 20.0


def _request(**fields: object) -> dict[str, object]:
    return {
        "agent_id": "llm-planner-001",
        "description": "Plan the rollout of the billing service to staging",
        "constraints": ["No production access"],
        **fields,
    }


async def _ledger_events(settings: Settings, job_id: str, kinds: set[str]) -> list[dict]:
    """The job's ledger events once every kind in `kinds` is there (poll with a deadline)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        if settings.ledger_path.exists():
            events = (await show_job(settings.ledger_path, job_id))["events"]
            if kinds <= {e["kind"] for e in events}:
                return events
        assert time.monotonic() < deadline, f"ledger never held {kinds} for {job_id}"
        await asyncio.sleep(0.05)


async def _phase_events(redis: Redis, settings: Settings, job_id: str) -> list[dict[str, str]]:
    entries = await redis.xrange(Keys(settings.key_prefix).job_events(job_id))
    return [fields for _, fields in entries]


async def test_job_runs_the_four_phases_to_done(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: StubServer
) -> None:
    job_id = await client.submit(_request())
    status = await client.wait(job_id, timeout=WAIT_S)

    assert status.state is JobState.DONE, status
    assert status.output is not None and status.output.decision is Decision.EXECUTE
    assert status.output.plan and [s.step for s in status.output.plan] == list(
        range(1, len(status.output.plan) + 1)
    )
    assert status.output.metadata["model"] == "scripted"
    assert status.output.metadata["usage"]["completion_tokens"] > 0
    assert status.attempt == 1 and status.started_at and status.finished_at and status.heartbeat_at
    assert status.progress["tokens"] > 0

    events = await _phase_events(redis, settings, job_id)
    phases = [e["phase"] for e in events if e["kind"] == "phase"]
    assert phases == [Phase.PREFLIGHT, Phase.PLAN, Phase.VALIDATE]
    assert (
        events[-1]["kind"] == "terminal" and events[-1]["state"] == "done" and events[-1]["phase"] == "RECORD"
    )

    ledger = await _ledger_events(settings, job_id, {"submitted", "done"})
    terminal = [e for e in ledger if e["kind"] in {"done", "refused", "failed", "cancelled"}]
    assert len(terminal) == 1 and terminal[0]["decision"] == "EXECUTE" and terminal[0]["model"] == "scripted"
    assert all(e["agent_id"] == "llm-planner-001" and e["tenant_id"] == "default" for e in ledger)
    # the system prompt told the LLM who it is and what it may not do
    system = stub.requests[-1]["messages"][0]["content"]
    assert "tier 0" in system.lower() and "run_terraform" in system


async def test_status_reads_queued_the_moment_submit_returns(client: PlanClient) -> None:
    job_id = await client.submit(_request())  # no worker running
    status = await client.status(job_id)
    assert (status.state, status.attempt, status.phase) == (JobState.QUEUED, 0, None)
    with pytest.raises(WaitTimeout):
        await client.wait(job_id, timeout=0.3)


async def test_unknown_job_id_raises_job_not_found(client: PlanClient) -> None:
    with pytest.raises(JobNotFound):
        await client.status("0" * 32)
    with pytest.raises(JobNotFound):
        await client.cancel("no-such-job")


async def test_bad_request_is_refused_at_submit_and_nothing_is_enqueued(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    with pytest.raises(BadRequest, match="description"):
        await client.submit(_request(description="x" * 8_001))
    with pytest.raises(BadRequest, match="not allowed"):
        await client.submit(_request(model="gpt-unlisted"))
    assert await redis.zcard(settings.queue_name) == 0
    assert await redis.xlen(Keys(settings.key_prefix).ledger_stream()) == 0


async def test_idempotency_key_returns_the_same_job(
    client: PlanClient, redis: Redis, settings: Settings
) -> None:
    ids = await asyncio.gather(*(client.submit(_request(idempotency_key="deploy-42")) for _ in range(5)))
    assert len(set(ids)) == 1
    assert await redis.zcard(settings.queue_name) == 1
    other_tenant = await client.submit(_request(idempotency_key="deploy-42", tenant_id="acme"))
    assert other_tenant != ids[0]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"agent_id": "nobody"}, RefusalCode.UNKNOWN_AGENT),
        ({"side_effects": ["run_terraform"]}, RefusalCode.FORBIDDEN_SIDE_EFFECT),
        ({"task_type": "deploy"}, RefusalCode.TIER_FORBIDS_TASK),
    ],
)
async def test_preflight_refusals_make_no_llm_call(
    client: PlanClient, worker: Worker, settings: Settings, stub: StubServer, fields: dict, code: RefusalCode
) -> None:
    job_id = await client.submit(_request(**fields))
    status = await client.wait(job_id, timeout=WAIT_S)
    assert status.state is JobState.REFUSED and status.refusal is not None
    assert status.refusal.code == code.value
    assert stub.requests == []
    ledger = await _ledger_events(settings, job_id, {"refused"})
    assert [e["reason"] for e in ledger if e["kind"] == "refused"] == [code.value]


@pytest.mark.parametrize(
    ("model", "decision", "flag"),
    [
        ("scripted-low-confidence", Decision.ESCALATE, "low_confidence"),
        ("scripted-forbidden-step", Decision.ESCALATE, "forbidden_action:"),
        ("scripted-no-json-schema", Decision.EXECUTE, None),
        ("scripted-429", Decision.EXECUTE, None),
        ("scripted-midstream-error", Decision.EXECUTE, None),
    ],
)
async def test_validate_decisions_and_recovered_llm_faults(
    client: PlanClient, worker: Worker, model: str, decision: Decision, flag: str | None
) -> None:
    status = await client.wait(await client.submit(_request(model=model)), timeout=WAIT_S)
    assert status.state is JobState.DONE, status
    assert status.output is not None and status.output.decision is decision
    flags = status.output.metadata["flags"]
    if flag is None:
        assert flags == []
    else:
        assert any(f.startswith(flag) for f in flags)
        assert status.output.notes_for_humans


@pytest.mark.parametrize(
    ("model", "error_type"),
    [
        ("scripted-invalid-json", "invalid_output"),
        ("scripted-500", "llm_unavailable"),
        ("scripted-402", "llm_out_of_credits"),
        ("scripted-huge-line", "llm_answer_too_large"),
        ("scripted-endless", "llm_answer_too_large"),
        ("scripted-not-http", "llm_unavailable"),
    ],
)
async def test_llm_failures_end_failed_with_a_typed_error(
    client: PlanClient, worker: Worker, settings: Settings, model: str, error_type: str
) -> None:
    job_id = await client.submit(_request(model=model))
    status = await client.wait(job_id, timeout=WAIT_S)
    assert status.state is JobState.FAILED and status.error is not None
    assert status.error.type == error_type and status.error.message
    ledger = await _ledger_events(settings, job_id, {"failed"})
    assert [e["reason"] for e in ledger if e["kind"] == "failed"] == [error_type]


async def test_the_model_that_answered_is_in_the_output_and_the_ledger(
    client: PlanClient, worker: Worker, settings: Settings
) -> None:
    job_id = await client.submit(_request(model="scripted-fallback"))
    status = await client.wait(job_id, timeout=WAIT_S)
    assert status.output is not None
    assert status.output.metadata["model_requested"] == "scripted-fallback"
    assert status.output.metadata["model"] == "scripted-fallback-backup"
    ledger = await _ledger_events(settings, job_id, {"done"})
    assert [e["model"] for e in ledger if e["kind"] == "done"] == ["scripted-fallback-backup"]


async def test_slow_stream_shows_plan_phase_and_rising_tokens(client: PlanClient, worker: Worker) -> None:
    job_id = await client.submit(_request(model="scripted-slow"))
    seen: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = await client.status(job_id)
        if status.terminal:
            break
        if status.phase is Phase.PLAN:
            seen.append(int(status.progress.get("tokens", 0)))
        await asyncio.sleep(0.1)
    assert status.state is JobState.DONE
    rising = [t for t in seen if t > 0]
    assert len(set(rising)) >= 3 and rising == sorted(rising), seen


async def test_watch_yields_phases_in_order_and_ends_at_terminal(client: PlanClient, worker: Worker) -> None:
    job_id = await client.submit(_request(model="scripted-slow"))
    events = [e async for e in client.watch(job_id)]
    phases = [e.phase for e in events if e.kind == "phase"]
    assert phases == [Phase.PREFLIGHT, Phase.PLAN, Phase.VALIDATE]
    assert any(e.kind == "progress" and e.tokens > 0 for e in events)
    assert events[-1].kind == "terminal" and events[-1].state is JobState.DONE


async def test_cancel_a_queued_job(client: PlanClient, settings: Settings) -> None:
    job_id = await client.submit(_request())
    status = await client.cancel(job_id)
    assert status.state is JobState.CANCELLED
    assert status.error is not None and status.error.type == "cancelled_by_submitter"
    with pytest.raises(NotCancellable, match="already ended cancelled"):
        await client.cancel(job_id)  # once finished, nothing to cancel: the record stays as it was
    again = await client.status(job_id)
    assert again.state is JobState.CANCELLED and again.finished_at == status.finished_at


async def test_cancel_a_running_job_stops_its_stream(
    client: PlanClient, worker: Worker, settings: Settings
) -> None:
    job_id = await client.submit(_request(model="scripted-slow"))
    deadline = time.monotonic() + WAIT_S
    while (await client.status(job_id)).phase is not Phase.PLAN:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    asked = time.monotonic()
    await client.cancel(job_id)
    status = await client.wait(job_id, timeout=WAIT_S)
    assert status.state is JobState.CANCELLED
    assert time.monotonic() - asked < 3 * settings.heartbeat_s + 1.0
    ledger = await _ledger_events(settings, job_id, {"cancelled"})
    assert len([e for e in ledger if e["kind"] == "cancelled"]) == 1


async def test_a_hand_crafted_payload_is_refused_not_crashed(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings
) -> None:
    """A job put straight into Redis with a broken request ends `refused` (bad_request)."""
    good = await client.submit(_request())
    bad = await client.submit(_request())
    await redis.zrem(settings.queue_name, bad)  # hold it back while we break its payload
    payload = {"t": None, "f": JOB_FUNCTION, "a": [bad, {"agent_id": 7, "extra": True}], "k": {}, "et": 0}
    await redis.set(job_key_prefix + bad, codec.dumps(payload))
    await redis.zadd(settings.queue_name, {bad: int(time.time() * 1000)})  # arq skips a falsy score
    status = await client.wait(bad, timeout=WAIT_S)
    assert status.state is JobState.REFUSED and status.refusal and status.refusal.code == "bad_request"
    assert (await client.wait(good, timeout=WAIT_S)).state is JobState.DONE
