"""Policy as pure functions: plain data in, a decision out. No I/O here.

`preflight` decides whether a request may be planned at all; `review_output` turns a
parsed plan into the final decision and the flags that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.capabilities import BUILTIN_VOCABULARY, is_canonical, normalize, shown
from governance.models import DEFAULT_TENANT, AgentRecord, AgentState, PlanDraft, PlanRequest, TenantRecord
from plangate_base.vocabulary import Decision, FailureCode, JobState, RefusalCode, ReviewDecision, TaskType

# Task types a tier may plan for. A tier-0 observer reads, analyses and plans, nothing else;
# tiers 1 and above default to the same and widen it per agent (AgentRecord.allowed_task_types).
TIER0_TASK_TYPES: frozenset[str] = frozenset(TaskType)
DEFAULT_TASK_TYPES: frozenset[str] = frozenset(TaskType)


def task_types_for(agent: AgentRecord) -> frozenset[str]:
    """The task types this agent may plan for."""
    if agent.tier == 0:
        return TIER0_TASK_TYPES
    return frozenset(agent.allowed_task_types) or DEFAULT_TASK_TYPES


@dataclass(frozen=True, slots=True)
class Allow:
    """PREFLIGHT passed."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """PREFLIGHT refused: a code from the vocabulary and a sentence for humans."""

    code: RefusalCode
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The final decision on a plan and the flags that led to it (empty when the plan stands)."""

    decision: Decision
    flags: tuple[str, ...]
    notes: tuple[str, ...]


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class LinkedJob:
    """What policy needs to know of a job another request names (`handoff_from`, `retry_of`)."""

    job_id: str
    tenant_id: str
    state: JobState
    has_output: bool
    review: ReviewDecision | None  # None: not reviewed


def check_links(request: PlanRequest, handoff: LinkedJob | None, retry: LinkedJob | None) -> Refuse | None:
    """A request may name only jobs of its own tenant, and hand off only a finished plan that a
    reviewer did not reject. Another tenant's job reads exactly like one that does not exist."""
    if request.handoff_from is not None:
        if handoff is None or handoff.tenant_id != request.tenant_id:
            return Refuse(
                RefusalCode.BAD_REQUEST, f"cannot hand off from {request.handoff_from}: no such job"
            )
        if not handoff.has_output:
            return Refuse(
                RefusalCode.BAD_REQUEST,
                f"cannot hand off from {handoff.job_id}: it ended {handoff.state.value}, not done",
            )
        if handoff.review is ReviewDecision.REJECTED:
            return Refuse(
                RefusalCode.BAD_REQUEST,
                f"cannot hand off from {handoff.job_id}: its plan was rejected in review",
            )
    if request.retry_of is not None and (retry is None or retry.tenant_id != request.tenant_id):
        return Refuse(RefusalCode.BAD_REQUEST, f"cannot retry {request.retry_of}: no such job")
    return None


def preflight(
    agent: AgentRecord | None,
    state: AgentState,
    request: PlanRequest,
    *,
    tenant: TenantRecord | None = DEFAULT_TENANT,
    model_allowed: bool = True,
) -> Allow | Refuse:
    """Decide whether `agent`, in live `state`, may have `request` planned for `tenant`.
    Most final checks first."""
    if agent is None:
        return Refuse(RefusalCode.UNKNOWN_AGENT, f"agent {request.agent_id!r} is not registered")
    if tenant is None or tenant.tenant_id != request.tenant_id:
        return Refuse(RefusalCode.TENANT_MISMATCH, f"tenant {request.tenant_id!r} is not registered")
    if agent.tenant_id != request.tenant_id:
        return Refuse(
            RefusalCode.TENANT_MISMATCH,
            f"agent {agent.agent_id} belongs to tenant {agent.tenant_id}, not {request.tenant_id}",
        )
    if request.project_id and request.project_id not in tenant.projects:
        return Refuse(
            RefusalCode.TENANT_MISMATCH,
            f"project {request.project_id!r} does not belong to tenant {tenant.tenant_id}",
        )
    if state.revoked:
        why = f": {state.revoked_reason}" if state.revoked_reason else ""
        return Refuse(RefusalCode.REVOKED, f"agent {agent.agent_id} is revoked{why}")
    if state.suspended or state.recent_errors >= agent.error_budget_limit:
        return Refuse(
            RefusalCode.ERROR_BUDGET_EXHAUSTED,
            f"agent {agent.agent_id} is suspended: {state.recent_errors} failed jobs within "
            f"{agent.error_budget_window_s}s (budget {agent.error_budget_limit}); "
            f"`plangate agents reset-budget {agent.agent_id}` lifts it",
        )
    task_types = task_types_for(agent)
    if request.task_type not in task_types:
        return Refuse(
            RefusalCode.TIER_FORBIDS_TASK,
            f"tier {agent.tier} may not plan task type {request.task_type!r} "
            f"(allowed: {', '.join(sorted(task_types))})",
        )
    forbidden = [s for s in request.side_effects if normalize(s) in agent.forbidden_actions]
    if forbidden:
        return Refuse(
            RefusalCode.FORBIDDEN_SIDE_EFFECT,
            f"agent {agent.agent_id} is forbidden: {', '.join(map(shown, forbidden))}",
        )
    not_allowed = [s for s in request.side_effects if normalize(s) not in agent.allowed_side_effects]
    if not_allowed:
        return Refuse(
            RefusalCode.FORBIDDEN_SIDE_EFFECT,
            f"agent {agent.agent_id} is not allowed: {', '.join(map(shown, not_allowed))} "
            f"(allowed: {', '.join(agent.allowed_side_effects) or 'nothing'})",
        )
    if not model_allowed:
        return Refuse(RefusalCode.MODEL_NOT_ALLOWED, f"model {request.model!r} is not on the allow-list")
    return ALLOW


# The failures that are the agent's own doing: the planner answered, and its answer was not a plan.
# Everything else (the endpoint down, rate limited, out of credits, slow or cut off; a worker that
# died; plangate's own errors) says nothing about the agent and never suspends it.
BUDGET_FAILURE_CODES: frozenset[str] = frozenset({FailureCode.INVALID_OUTPUT})


def counts_against_budget(state: JobState, code: str | None) -> bool:
    """Whether a job that ended in `state` with failure `code` spends its agent's error budget."""
    return state is JobState.FAILED and code in BUDGET_FAILURE_CODES


def _name_problem(agent: AgentRecord, name: str, known: frozenset[str]) -> tuple[str, str, str] | None:
    """Why a plan may not use `name`: (kind, the name as shown, why), or None when it is allowed."""
    word = normalize(name)
    if word in agent.forbidden_actions:
        return "forbidden", word, f"which agent {agent.agent_id} may not do"
    if word in agent.allowed_side_effects:
        return None
    if is_canonical(word) and word in known:
        return "not_allowed", word, f"which is not on agent {agent.agent_id}'s allowed list"
    return "unknown", shown(name), "which is not a known action or side effect"


def review_output(
    agent: AgentRecord, draft: PlanDraft, known: frozenset[str] = BUILTIN_VOCABULARY
) -> Verdict:
    """Turn a parsed plan into the final decision, deny-by-default: every action of every step and
    every declared side effect must be on the agent's allowed list, or the plan escalates with a flag
    naming it (`forbidden_`, `not_allowed_` or, outside the `known` vocabulary, `unknown_`).
    Confidence below the agent's threshold escalates a plan that would otherwise stand."""
    flags: list[str] = []
    notes: list[str] = []
    for step in draft.plan:
        for action in step.actions:
            problem = _name_problem(agent, action, known)
            if problem is not None:
                kind, word, why = problem
                flags.append(f"{kind}_action:step_{step.step}:{word}")
                notes.append(
                    f"Step {step.step} ({step.title[:100]}) needs '{shown(action)}', {why}: "
                    "a human must carry it out or approve it."
                )
    for effect in draft.side_effects:
        problem = _name_problem(agent, effect, known)
        if problem is not None:
            kind, word, why = problem
            flags.append(f"{kind}_side_effect:{word}")
            notes.append(f"The plan declares the side effect '{shown(effect)}', {why}.")
    needs_human = bool(flags)  # a name outside the allowed list escalates whatever the LLM decided
    if draft.confidence < agent.confidence_threshold:
        flags.insert(0, "low_confidence")
        notes.insert(
            0,
            f"Confidence {draft.confidence:.2f} is below this agent's threshold "
            f"{agent.confidence_threshold:.2f}: a human should review the plan.",
        )
    if needs_human or (flags and draft.decision in (Decision.EXECUTE, Decision.SKIP)):
        return Verdict(Decision.ESCALATE, tuple(flags), tuple(notes))
    return Verdict(draft.decision, tuple(flags), tuple(notes))


def has_unknown_names(verdict: Verdict) -> bool:
    """Whether some flag calls a name unknown (the caller may look again with the extended vocabulary)."""
    return any(f.startswith("unknown_") for f in verdict.flags)
