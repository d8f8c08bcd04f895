"""Agents from templates, through a real worker against real Redis and the scripted endpoint: the PLAN
phase uses the template's instructions, install and upgrade are ledger events, a widening upgrade needs
confirmation, and a version's figures match what its agent's real jobs produced."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiosqlite
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from governance.models import ReviewerRecord
from governance.templates import Template, builtin_template
from plangate_base.vocabulary import Decision, EventKind, JobState
from tests.eventually import eventually
from worker.admin import AgentAdmin
from worker.client import PlanClient
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.llm_stub.server import StubServer
from worker.settings import Settings
from worker.template_catalogue import TemplateCatalogue
from worker.template_install import ConfirmationNeeded, TemplateInstaller

pytestmark = pytest.mark.integration

WAIT_S = 20.0
AGENT = "storage-planner"


def _team_template(version: str, **governance: Any) -> Template:
    """The built-in planner with instructions that take a parameter, as a publisher would write it."""
    base = builtin_template("llm-planner").model_dump()
    base.update(
        name="team-planner",
        version=version,
        summary="A planner that plans for one team",
        instructions={
            "system_prompt": "You are $agent_id, the planner of the $team team (tier $tier).",
            "parameters": [{"name": "team", "description": "the team it plans for"}],
        },
        governance={**base["governance"], **governance},
    )
    return Template.model_validate(base)


async def _ledger_rows(settings: Settings, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    async with aiosqlite.connect(settings.ledger_path) as db:
        return list(await (await db.execute(sql, params)).fetchall())


async def _recorded(settings: Settings, job_ids: list[str], reviews: int) -> None:
    """Wait until the ledger writer committed every job's terminal row and the reviews."""

    async def present() -> bool:
        if not settings.ledger_path.exists():
            return False
        marks = ", ".join("?" * len(job_ids))
        done = await _ledger_rows(
            settings,
            f"SELECT count(*) FROM jobs WHERE job_id IN ({marks}) AND state != 'queued'",
            tuple(job_ids),
        )
        reviewed = await _ledger_rows(
            settings,
            f"SELECT count(*) FROM events WHERE kind IN (?, ?) AND job_id IN ({marks})",
            (EventKind.REVIEW_APPROVED.value, EventKind.REVIEW_REJECTED.value, *job_ids),
        )
        return done[0][0] == len(job_ids) and reviewed[0][0] == reviews

    await eventually(present, timeout_s=WAIT_S, what="the jobs and reviews in the ledger")


def _expected(statuses: list[JobStatus], approved: int, rejected: int) -> dict[str, Any]:
    """The figures as the job statuses the client saw imply them."""
    done = [s for s in statuses if s.state is JobState.DONE and s.output is not None]
    decisions = Counter(s.output.decision.value for s in done if s.output)
    escalated = decisions[Decision.ESCALATE.value]
    failures = Counter(s.error.type for s in statuses if s.state is JobState.FAILED and s.error)
    return {
        "jobs": len(statuses),
        "decisions": dict(decisions),
        "escalation_rate": round(escalated / len(done), 4),
        "review_approval_rate": round(approved / escalated, 4),
        "review_rejection_rate": round(rejected / escalated, 4),
        "failures": dict(failures),
        "failure_rate": {k: round(n / len(statuses), 4) for k, n in failures.items()},
        "mean_confidence": round(sum(s.output.confidence for s in done if s.output) / len(done), 4),
    }


async def test_figures_instructions_and_upgrades_from_real_jobs(
    client: PlanClient, worker: Worker, redis: Redis, settings: Settings, stub: StubServer
) -> None:
    keys = Keys(settings.key_prefix)
    catalogue = TemplateCatalogue(settings.ledger_path)
    await catalogue.publish(_team_template("1.0.0"), None, by="test", allow_unsigned=True)
    installer = TemplateInstaller(redis, keys, catalogue)
    agent, _ = await installer.install(
        AGENT, "team-planner@^1", tenant_id="default", by="test", parameters={"team": "storage"},
        allow_unsigned=True, keyless=True,
    )  # fmt: skip
    assert agent.template is not None and agent.template.version == "1.0.0"

    # Real jobs: plans, low-confidence plans (escalated), an LLM failure, a preflight refusal.
    models = ["scripted"] * 3 + ["scripted-low-confidence"] * 2 + ["scripted-500"]
    job_ids = [
        await client.submit({"agent_id": AGENT, "description": f"Plan step {i} of the move", "model": m})
        for i, m in enumerate(models)
    ]
    job_ids.append(
        await client.submit({"agent_id": AGENT, "description": "Log in and fix it", "side_effects": ["ssh"]})
    )
    statuses = [await client.wait(j, timeout=WAIT_S) for j in job_ids]
    assert {s.state for s in statuses} == {JobState.DONE, JobState.FAILED, JobState.REFUSED}

    # The PLAN phase told the LLM the template's instructions, with the agent's parameter filled in.
    systems = [r["messages"][0]["content"] for r in stub.requests if r["messages"][0]["role"] == "system"]
    told = "You are storage-planner, the planner of the storage team (tier 0)."
    assert systems and all(s.startswith(told) for s in systems)

    admin = AgentAdmin(redis, keys)
    reviewer_key = await admin.save_reviewer(ReviewerRecord(reviewer_id="rita"), by="test")
    desk = await client.review_desk("rita", reviewer_key)
    escalated = [s.job_id for s in statuses if s.output and s.output.decision is Decision.ESCALATE]
    await desk.decide(escalated[0], approve=True)
    await desk.decide(escalated[1], approve=False)
    await _recorded(settings, job_ids, reviews=2)

    shown = await catalogue.show("team-planner@1.0.0")
    figures = {k: shown["figures"][k] for k in _expected(statuses, 1, 1)}
    assert figures == _expected(statuses, approved=1, rejected=1)
    assert shown["figures"]["states"] == dict(Counter(s.state.value for s in statuses))

    # A widening upgrade: shown first, refused without confirmation, recorded once confirmed.
    lower = _team_template("1.1.0", confidence_threshold=0.2)
    await catalogue.publish(lower, None, by="test", allow_unsigned=True)
    upgrade = await installer.plan_upgrade(AGENT, "^1")
    assert upgrade.widens and [c.field for c in upgrade.changes] == ["confidence_threshold"]
    with pytest.raises(ConfirmationNeeded):
        await installer.apply(upgrade, yes=False, by="test", allow_unsigned=True)
    assert (await admin.agents.get(AGENT)).template.version == "1.0.0"  # type: ignore[union-attr]
    assert await installer.apply(upgrade, yes=True, by="test", allow_unsigned=True)
    after = await client.wait(
        await client.submit(
            {"agent_id": AGENT, "description": "Plan the storage cleanup", "model": "scripted-low-confidence"}
        ),
        timeout=WAIT_S,
    )
    # Its 0.3 escalated under 1.0.0's threshold; 1.1.0's 0.2 lets it through.
    assert after.output is not None and after.output.decision is Decision.EXECUTE
    await _recorded(settings, [*job_ids, after.job_id], reviews=2)

    kinds = [
        r[0]
        for r in await _ledger_rows(
            settings, "SELECT kind FROM events WHERE agent_id = ? AND job_id IS NULL ORDER BY seq", (AGENT,)
        )
    ]
    assert kinds == [EventKind.TEMPLATE_INSTALLED.value, EventKind.TEMPLATE_UPGRADED.value]
    assert (await catalogue.show("team-planner@1.1.0"))["figures"]["jobs"] == 1
    assert (await catalogue.show("team-planner@1.0.0"))["figures"]["jobs"] == len(job_ids)
