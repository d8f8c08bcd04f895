"""Ledger events as the queue side builds them (worker.ledger_events), for the ledger's tests."""

from __future__ import annotations

import json
from typing import Any

from governance.models import SEED_AGENT, AgentOutput, AgentRecord, PlanRequest
from governance.policy import Refuse, review_output
from plangate_base.vocabulary import FailureCode, JobState, RefusalCode
from worker.admin import agent_change_entry
from worker.ledger_events import ledger_event
from worker.llm.planner import parse_draft
from worker.llm.usage import Usage
from worker.llm_stub.server import build_plan
from worker.outcome import Outcome
from worker.pipeline import governed_output

DESCRIPTION = "Rotate the TLS certificates of the web tier"
AGENT = SEED_AGENT.model_copy(update={"agent_id": "agent-a"})  # the seed's tier-0 observer, as agent-a
# What the scripted endpoint reports for a short answer (worker/llm reads these three from the stream).
USAGE = Usage(prompt_tokens=412, completion_tokens=268, total_tokens=680).as_dict()


def make_event(
    kind: str,
    job_id: str | None = "job-1",
    *,
    agent_id: str = "agent-a",
    tenant_id: str | None = "tenant-t",
    attempt: int = 1,
    worker: str | None = "host:123",
    decision: str | None = None,
    reason: str | None = None,
    model: str | None = None,
    payload: dict[str, Any] | None = None,
    **stamped: Any,
) -> dict[str, Any]:
    """An event of `kind` for `job_id` (None: an agent event) as `ledger_event` builds it; `stamped`
    replaces what it stamps itself (event_id, created_at)."""
    event = ledger_event(
        kind,
        job_id=job_id,
        agent_id=agent_id,
        tenant_id=tenant_id,
        attempt=attempt,
        worker=worker,
        decision=decision,
        reason=reason,
        model=model,
        payload=payload,
    )
    event.update(stamped)
    return event


def request_payload(description: str = DESCRIPTION, **request: Any) -> dict[str, Any]:
    """A submitted event's payload: a PlanRequest (agent-a of tenant-t unless `request` says) as the client
    dumps it."""
    fields = {"agent_id": "agent-a", "tenant_id": "tenant-t", "description": description, **request}
    return PlanRequest.model_validate(fields).model_dump(mode="json", exclude_none=True)


def agent_output(
    description: str = DESCRIPTION, behaviour: str = "scripted", agent: AgentRecord = AGENT
) -> AgentOutput:
    """The AgentOutput of the scripted endpoint's plan for `description`, parsed as the planner parses an
    answer and governed by `agent` (the decision-bearing part of what VALIDATE builds)."""
    draft = parse_draft(json.dumps(build_plan(description, behaviour)))
    verdict = review_output(agent, draft)
    return governed_output(
        agent, draft, verdict, {"model": behaviour, "usage": USAGE, "flags": list(verdict.flags)}
    )


def submitted_event(
    job_id: str = "job-1",
    description: str = DESCRIPTION,
    *,
    request: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A job's submitted event, its payload the request for `description` (more request fields in
    `request`); agent and tenant are the event's. The producer is no worker: attempt 0, no worker name."""
    fields.setdefault("attempt", 0)
    fields.setdefault("worker", None)
    who = {"agent_id": fields.get("agent_id", "agent-a"), "tenant_id": fields.get("tenant_id", "tenant-t")}
    payload = request_payload(description, **who, **(request or {}))
    return make_event("submitted", job_id, payload=payload, **fields)


def done_event(
    job_id: str = "job-1", output: AgentOutput | None = None, model: str = "scripted", **fields: Any
) -> dict[str, Any]:
    """A job's done event as RECORD writes it: decision, flags, model and payload from its Outcome."""
    output = output if output is not None else agent_output()
    outcome = Outcome.done(output, model=model, usage=USAGE, tokens=USAGE["completion_tokens"])
    return make_event(outcome.kind, job_id, **{**outcome.event_fields(), **fields})


def refused_event(job_id: str = "job-1", code: str = "quota_exceeded", **fields: Any) -> dict[str, Any]:
    """A job's refused event as RECORD writes it for a PREFLIGHT refusal."""
    outcome = Outcome.refused(Refuse(RefusalCode(code), f"refused: {code}"))
    return make_event(outcome.kind, job_id, **{**outcome.event_fields(), **fields})


def failed_event(job_id: str = "job-1", error_type: str = "llm_timeout", **fields: Any) -> dict[str, Any]:
    """A job's failed event as RECORD writes it for an LLM error after the call began."""
    outcome = Outcome.error(JobState.FAILED, FailureCode(error_type), f"failed: {error_type}", usage=USAGE)
    return make_event(outcome.kind, job_id, **{**outcome.event_fields(), **fields})


def agent_event(kind: str, agent_id: str, reason: str = "", by: str = "op") -> dict[str, Any]:
    """An agent event (revoked, restored, budget_reset) as `plangate agents ...` puts it on the stream."""
    return json.loads(agent_change_entry(kind, agent_id, reason=reason, by=by)["e"])


def job_events(
    job_id: str, description: str, plan_for: str | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """A job's submitted and done events; the plan is the scripted plan for `plan_for` (default the
    description)."""
    output = agent_output(plan_for if plan_for is not None else description)
    return [submitted_event(job_id, description, **fields), done_event(job_id, output, **fields)]
