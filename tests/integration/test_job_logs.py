"""The log lines of real jobs (a worker against real Redis and the scripted LLM endpoint): each one a job
logs, the LLM module's retry included, names its job, agent, tenant and phase, and no other job's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis
from structlog.testing import capture_logs

from governance.models import AgentRecord, TenantRecord
from governance.registry import AgentRegistry, TenantRegistry
from plangate_base.vocabulary import JobState, Phase
from tests.integration.workers import running_worker
from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 20.0
CONTEXT = ("job_id", "agent_id", "tenant_id", "phase")


@contextlib.contextmanager
def job_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The log entries, with the context variables merged in first as plangate's configurations do
    (worker/log_setup.py, plangate_base/logs.py)."""
    with capture_logs() as entries:
        structlog.get_config()["processors"].insert(0, structlog.contextvars.merge_contextvars)
        yield entries  # (capture_logs restores the configuration's processors on the way out)


def _of(logs: list[MutableMapping[str, Any]], job_id: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry.get("job_id") == job_id]


async def test_every_line_of_a_job_names_its_job_agent_tenant_and_phase(settings: Settings) -> None:
    request = {"agent_id": "llm-planner-001", "description": "Plan the log check", "model": "scripted-429"}
    with job_logs() as logs:
        async with running_worker(settings), PlanClient.connect(settings) as client:
            job_id = await client.submit(request)
            status = await client.wait(job_id, WAIT_S)
            unfixable = await client.submit({**request, "model": "scripted-invalid-json"})
            failed = await client.wait(unfixable, WAIT_S)
    assert status.state is JobState.DONE and failed.state is JobState.FAILED
    [repair] = [e for e in _of(logs, unfixable) if e["event"] == "llm.repair"]
    assert (repair["agent_id"], repair["tenant_id"], repair["phase"]) == (
        "llm-planner-001",
        "default",
        "PLAN",
    )

    lines = _of(logs, job_id)
    by_event = {entry["event"]: entry for entry in lines}
    assert {"job.submitted", "job.started", "llm.retry", "job.finished"} <= by_event.keys(), lines
    worker_lines = [entry for entry in lines if entry["event"] != "job.submitted"]  # the client's own
    for entry in worker_lines:
        assert (entry["agent_id"], entry["tenant_id"], entry["attempt"]) == ("llm-planner-001", "default", 1)
    assert by_event["job.started"]["phase"] == Phase.PREFLIGHT
    assert (
        by_event["llm.retry"]["phase"] == Phase.PLAN and by_event["llm.retry"]["error"] == "llm_rate_limited"
    )
    assert by_event["job.finished"]["phase"] == Phase.RECORD and by_event["job.finished"]["state"] == "done"


async def test_concurrent_jobs_keep_their_own_context(redis: Redis, settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    await TenantRegistry(redis, keys).put(TenantRecord(tenant_id="acme"))
    await AgentRegistry(redis, keys).put(AgentRecord(agent_id="acme-planner", tenant_id="acme", keyless=True))
    owners = {("llm-planner-001", "default"), ("acme-planner", "acme")}
    with job_logs() as logs:
        async with running_worker(settings), PlanClient.connect(settings) as client:
            # Both answer 429 with Retry-After first: each job waits about a second inside PLAN.
            jobs = {
                await client.submit(
                    {
                        "agent_id": agent,
                        "tenant_id": tenant,
                        "description": f"Plan {agent}",
                        "model": "scripted-429",
                    }
                ): (agent, tenant)
                for agent, tenant in owners
            }
            ended = await asyncio.gather(*(client.wait(job_id, WAIT_S) for job_id in jobs))
    assert [s.state for s in ended] == [JobState.DONE, JobState.DONE]

    worker_lines = [e for e in logs if e.get("job_id") in jobs and e["event"] != "job.submitted"]
    for entry in worker_lines:
        assert (entry["agent_id"], entry["tenant_id"]) == jobs[entry["job_id"]], entry
        assert entry["phase"] in set(Phase)
    retries = {e["job_id"] for e in worker_lines if e["event"] == "llm.retry"}
    assert retries == set(jobs)
    # The two jobs ran at the same time: each one's first line came before the other's last.
    spans = [[i for i, e in enumerate(logs) if e in worker_lines and e["job_id"] == j] for j in jobs]
    assert spans[0][0] < spans[1][-1] and spans[1][0] < spans[0][-1], "the jobs did not overlap"
    # The worker's own lines (its start, the ledger writer's) carry no job's context.
    own = [e for e in logs if e["event"].startswith(("worker.", "ledger_writer.", "ledger."))]
    assert own and all(not set(CONTEXT) & e.keys() for e in own), own
