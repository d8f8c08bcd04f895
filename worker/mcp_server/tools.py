"""The MCP tools: their names, input and output models (the API's own pydantic models), which scopes
see them, what each calls on `Jobs`, and the short text a person reads beside the structured result."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp_types import Tool, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from governance.api_tokens import Scope
from plangate_base.vocabulary import JobState, StreamKind
from worker.api.models import MAX_PAGE, MAX_WAIT_S, JobList, JobSubmission
from worker.job_models import JobEvent, JobStatus
from worker.mcp_server.jobs import Jobs

DEFAULT_WAIT_S = 30.0  # wait_for_job's default bound (MCP clients often time a call out after 60 s)
_ID = Field(min_length=1, max_length=100, description="the job id submit_plan answered")


class JobRef(BaseModel):
    """One job, by id."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = _ID


class WaitFor(BaseModel):
    """Wait for a job to end, at most `timeout_s` seconds."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = _ID
    timeout_s: float = Field(
        default=DEFAULT_WAIT_S, ge=0, le=MAX_WAIT_S, description="seconds to wait at most"
    )


class JobQuery(BaseModel):
    """Filters of list_my_jobs (newest first)."""

    model_config = ConfigDict(extra="forbid")

    state: list[JobState] | None = Field(default=None, description="only these states")
    agent_id: str | None = Field(default=None, max_length=64)
    tenant_id: str | None = Field(
        default=None, max_length=64, description="admin and auditor tokens: the tenant to list"
    )
    limit: int = Field(default=20, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=100, description="next_cursor of the previous page")


class Verdict(BaseModel):
    """A reviewer's decision on an escalated plan, with its reason."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = _ID
    note: str = Field(default="", max_length=2000, description="why (recorded in the ledger)")


class WaitedStatus(JobStatus):
    """The status object, and when the job has not ended yet a hint to call wait_for_job again."""

    hint: str | None = None


class ReviewList(BaseModel):
    """Escalated plans waiting for this reviewer, oldest first."""

    jobs: list[JobStatus]


Report = Callable[[JobEvent], Awaitable[None]]
Run = Callable[[Jobs, Any, Report | None], Awaitable[BaseModel]]

_ALL = frozenset(Scope)
_SUBMITTERS = frozenset({Scope.AGENT, Scope.TENANT, Scope.ADMIN})
_REVIEWERS = frozenset({Scope.REVIEWER})


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its MCP description and what it runs."""

    name: str
    title: str
    description: str
    input: type[BaseModel]
    output: type[BaseModel]
    scopes: frozenset[Scope]
    run: Run
    read_only: bool = True

    def tool(self) -> Tool:
        """The tool as tools/list shows it (schemas generated from the models, once: ~7 ms a tool)."""
        return _tool_of(self)


@functools.cache
def _tool_of(spec: ToolSpec) -> Tool:
    return Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input.model_json_schema(),
        output_schema=spec.output.model_json_schema(),
        annotations=ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=False),
    )


async def _submit(jobs: Jobs, args: BaseModel, report: Report | None) -> JobStatus:
    return await jobs.submit(args.model_dump(exclude_unset=True))


async def _get(jobs: Jobs, args: JobRef, report: Report | None) -> JobStatus:
    return await jobs.status(args.job_id)


async def _wait(jobs: Jobs, args: WaitFor, report: Report | None) -> WaitedStatus:
    status = await wait_for(jobs, args.job_id, args.timeout_s, report)
    hint = None
    if not status.terminal:
        hint = f"job {status.job_id} is still {status.state.value}: call wait_for_job again"
    return WaitedStatus(**status.model_dump(), hint=hint)


async def wait_for(jobs: Jobs, job_id: str, timeout_s: float, report: Report | None) -> JobStatus:
    """The job's status once it ends or `timeout_s` passed; with `report`, each event of the job's
    stream (phases, tokens) goes to it meanwhile."""
    status = await jobs.status(job_id)  # an unknown or another tenant's job fails here, before waiting
    if status.terminal or timeout_s <= 0:
        return status
    if report is None:
        return await jobs.wait(job_id, timeout_s)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            events = jobs.events(job_id)
            try:
                async for event in events:
                    await report(event)
                    if event.kind is StreamKind.TERMINAL:
                        break
            finally:
                await events.aclose()  # type: ignore[attr-defined]
    return await jobs.status(job_id)


async def _cancel(jobs: Jobs, args: JobRef, report: Report | None) -> JobStatus:
    return await jobs.cancel(args.job_id)


async def _list(jobs: Jobs, args: JobQuery, report: Report | None) -> JobList:
    return await jobs.jobs(
        states=frozenset(args.state or ()),
        agent_id=args.agent_id,
        tenant_id=args.tenant_id,
        limit=args.limit,
        cursor=args.cursor,
    )


async def _reviews(jobs: Jobs, args: BaseModel, report: Report | None) -> ReviewList:
    return ReviewList(jobs=await jobs.pending_reviews())


async def _approve(jobs: Jobs, args: Verdict, report: Report | None) -> JobStatus:
    return await jobs.decide_review(args.job_id, approve=True, note=args.note)


async def _reject(jobs: Jobs, args: Verdict, report: Report | None) -> JobStatus:
    return await jobs.decide_review(args.job_id, approve=False, note=args.note)


class NoArguments(BaseModel):
    """No arguments."""

    model_config = ConfigDict(extra="forbid")


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "submit_plan",
        "Submit a planning job",
        "Queue a planning job for this token's agent (a tenant token names agent_id). Answers the queued "
        "job's status at once; follow it with wait_for_job. The same idempotency_key with the same request "
        "answers the same job.",
        JobSubmission,
        JobStatus,
        _SUBMITTERS,
        _submit,
        read_only=False,
    ),
    ToolSpec(
        "get_job",
        "A job's status",
        "The job's state, phase, progress and, once done, its plan (output: the AgentOutput).",
        JobRef,
        JobStatus,
        _ALL,
        _get,
    ),
    ToolSpec(
        "wait_for_job",
        "Wait for a job to end",
        f"Waits until the job ends or timeout_s (at most {MAX_WAIT_S:g} s) passed; then answers its status "
        "(with a hint to call again when it has not ended). Sends progress notifications (phase, tokens) "
        "when the call carries a progressToken.",
        WaitFor,
        WaitedStatus,
        _ALL,
        _wait,
    ),
    ToolSpec(
        "cancel_job",
        "Cancel a job",
        "At once when queued; a running job stops at its next heartbeat. Fails when it has ended.",
        JobRef,
        JobStatus,
        _SUBMITTERS,
        _cancel,
        read_only=False,
    ),
    ToolSpec(
        "list_my_jobs",
        "List the caller's jobs",
        "Newest first: an agent token's own jobs, a tenant or reviewer token's tenant's.",
        JobQuery,
        JobList,
        _ALL,
        _list,
    ),
    ToolSpec(
        "list_reviews",
        "Plans waiting for review",
        "The reviewer's tenant's escalated plans not reviewed yet, oldest first (reviewer tokens).",
        NoArguments,
        ReviewList,
        _REVIEWERS,
        _reviews,
    ),
    ToolSpec(
        "approve_plan",
        "Approve an escalated plan",
        "Record this reviewer's approval (and its note) in the job and the ledger (reviewer tokens).",
        Verdict,
        JobStatus,
        _REVIEWERS,
        _approve,
        read_only=False,
    ),
    ToolSpec(
        "reject_plan",
        "Reject an escalated plan",
        "Record this reviewer's rejection (and its note) in the job and the ledger (reviewer tokens).",
        Verdict,
        JobStatus,
        _REVIEWERS,
        _reject,
        read_only=False,
    ),
)
BY_NAME = {spec.name: spec for spec in TOOLS}


def visible(scope: Scope | None) -> list[ToolSpec]:
    """The tools a caller of `scope` may use (every one when the scope is not known on this side)."""
    return [spec for spec in TOOLS if scope is None or scope in spec.scopes]


def describe(answer: BaseModel) -> str:
    """The short text beside a structured result: state, decision, confidence, the numbered steps."""
    if isinstance(answer, JobStatus):
        lines = _status_lines(answer)
        if isinstance(answer, WaitedStatus) and answer.hint:
            lines.append(answer.hint)
        return "\n".join(lines)
    if isinstance(answer, JobList | ReviewList):
        rows = [_status_lines(s)[0] for s in answer.jobs]
        more = ["(more: pass next_cursor as cursor)"] if getattr(answer, "next_cursor", None) else []
        return "\n".join([f"{len(rows)} job(s)", *rows, *more])
    return answer.model_dump_json()


def _status_lines(status: JobStatus) -> list[str]:
    head = f"job {status.job_id}: {status.state.value}"
    if status.phase is not None and not status.terminal:
        head += f" (phase {status.phase.value})"
    if status.cancel_requested and not status.terminal:
        head += ", cancel requested"
    lines = [head]
    if status.output is not None:
        out = status.output
        lines.append(f"decision: {out.decision.value}, confidence {out.confidence:.2f}")
        lines += [f"{s.step}. {s.title}" + (f": {s.description}" if s.description else "") for s in out.plan]
    if status.refusal is not None:
        lines.append(f"refused: {status.refusal.code}: {status.refusal.reason}")
    if status.error is not None:
        lines.append(f"error: {status.error.type}: {status.error.message}")
    if status.review is not None:
        lines.append(f"review: {status.review.decision.value} by {status.review.by}")
    return lines


def describe_event(event: JobEvent) -> str:
    """A progress notification's message: the job's phase (or state) and its tokens so far."""
    where = event.phase.value if event.phase is not None else event.state.value
    if event.kind is StreamKind.TERMINAL:
        where = event.state.value
    return f"{where}, {event.tokens} tokens" if event.tokens else where
