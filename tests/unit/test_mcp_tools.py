"""The MCP tools' table (worker/mcp_server/tools.py): names, schemas from the API's models, who sees
which tool, and the short text beside a structured result. The tools' calls run end to end in
tests/e2e/test_mcp.py."""

from __future__ import annotations

from governance.api_tokens import Scope
from governance.models import AgentOutput, PlanDraft
from plangate_base.clock import now_iso
from plangate_base.vocabulary import JobState, Phase, StreamKind
from worker.api.models import MAX_PAGE, MAX_WAIT_S, JobList, JobSubmission
from worker.job_models import JobEvent, JobStatus, Refusal
from worker.llm_stub.server import build_plan
from worker.mcp_server.tools import (
    BY_NAME,
    TOOLS,
    JobQuery,
    WaitedStatus,
    WaitFor,
    describe,
    describe_event,
    visible,
)

JOB_TOOLS = {"submit_plan", "get_job", "wait_for_job", "cancel_job", "list_my_jobs"}
REVIEW_TOOLS = {"list_reviews", "approve_plan", "reject_plan"}


def _done_status() -> JobStatus:
    draft = PlanDraft.model_validate(build_plan("Plan the rollout of the new index"))
    output = AgentOutput(**draft.model_dump(), agent_id="planner-1", version="0", timestamp=now_iso())
    return JobStatus(
        job_id="j1",
        state=JobState.DONE,
        agent_id="planner-1",
        tenant_id="t1",
        submitted_at=now_iso(),
        output=output,
    )


def test_the_tools_are_the_issues_and_their_schemas_are_the_api_models() -> None:
    assert {spec.name for spec in TOOLS} == JOB_TOOLS | REVIEW_TOOLS
    submit = BY_NAME["submit_plan"].tool()
    assert submit.input_schema == JobSubmission.model_json_schema()
    assert "agent_key" not in submit.input_schema["properties"]  # identity is the token, never an argument
    assert {"description", "idempotency_key", "constraints", "context"} <= set(
        submit.input_schema["properties"]
    )
    assert submit.output_schema == JobStatus.model_json_schema()
    assert BY_NAME["list_my_jobs"].tool().output_schema == JobList.model_json_schema()
    for spec in TOOLS:
        tool = spec.tool()
        assert tool.input_schema["type"] == "object" and tool.output_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint is spec.read_only


def test_each_scope_sees_the_tools_its_token_may_use() -> None:
    names = {scope: {spec.name for spec in visible(scope)} for scope in Scope}
    assert names[Scope.AGENT] == names[Scope.TENANT] == JOB_TOOLS
    assert names[Scope.REVIEWER] == REVIEW_TOOLS | {"get_job", "wait_for_job", "list_my_jobs"}
    assert names[Scope.AUDITOR] == {"get_job", "wait_for_job", "list_my_jobs"}
    assert names[Scope.ADMIN] == JOB_TOOLS  # reviews need a reviewer's own token, as on /v1/reviews
    assert {spec.name for spec in visible(None)} == JOB_TOOLS | REVIEW_TOOLS


def test_the_text_of_a_done_job_has_decision_confidence_and_numbered_steps() -> None:
    status = _done_status()
    assert status.output is not None and status.output.plan
    lines = describe(status).splitlines()
    assert lines[0] == "job j1: done"
    assert lines[1] == f"decision: {status.output.decision.value}, confidence {status.output.confidence:.2f}"
    assert [line.split(". ", 1)[0] for line in lines[2:]] == [str(s.step) for s in status.output.plan]
    assert lines[2].startswith(f"1. {status.output.plan[0].title}")


def test_the_text_of_a_waiting_refused_or_listed_job() -> None:
    running = JobStatus(
        job_id="j2",
        state=JobState.RUNNING,
        phase=Phase.PLAN,
        agent_id="a",
        tenant_id="t",
        submitted_at=now_iso(),
    )
    waited = WaitedStatus(**running.model_dump(), hint="job j2 is still running: call wait_for_job again")
    assert describe(waited).splitlines() == ["job j2: running (phase PLAN)", waited.hint]
    refused = running.model_copy(
        update={"state": JobState.REFUSED, "phase": None, "refusal": Refusal(code="revoked", reason="no")}
    )
    assert describe(refused).splitlines() == ["job j2: refused", "refused: revoked: no"]
    listed = describe(JobList(jobs=[_done_status(), running], next_cursor="1.j2")).splitlines()
    assert listed == [
        "2 job(s)",
        "job j1: done",
        "job j2: running (phase PLAN)",
        "(more: pass next_cursor as cursor)",
    ]


def test_progress_messages_name_the_phase_and_the_tokens() -> None:
    planning = JobEvent(
        kind=StreamKind.PROGRESS, state=JobState.RUNNING, phase=Phase.PLAN, tokens=120, at=now_iso()
    )
    assert describe_event(planning) == "PLAN, 120 tokens"
    started = JobEvent(kind=StreamKind.PHASE, state=JobState.RUNNING, phase=Phase.PREFLIGHT, at=now_iso())
    assert describe_event(started) == "PREFLIGHT"
    ended = JobEvent(
        kind=StreamKind.TERMINAL, state=JobState.DONE, phase=Phase.RECORD, tokens=300, at=now_iso()
    )
    assert describe_event(ended) == "done, 300 tokens"


def test_waits_are_bounded_and_lists_are_paged() -> None:
    assert WaitFor.model_json_schema()["properties"]["timeout_s"]["maximum"] == MAX_WAIT_S
    assert JobQuery.model_json_schema()["properties"]["limit"]["maximum"] == MAX_PAGE
