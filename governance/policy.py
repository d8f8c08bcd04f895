"""Policy as pure functions: plain data in, a decision out. No I/O here.

`preflight` decides whether a request may be planned at all; `review_output` turns a
parsed plan into the final decision and the flags that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.models import DEFAULT_TENANT, AgentRecord, AgentState, PlanDraft, PlanRequest, TenantRecord
from governance.vocabulary import Decision, JobState, RefusalCode, TaskType

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
    forbidden = [s for s in request.side_effects if s in agent.forbidden_actions]
    if forbidden:
        return Refuse(
            RefusalCode.FORBIDDEN_SIDE_EFFECT,
            f"agent {agent.agent_id} is forbidden: {', '.join(forbidden)}",
        )
    if agent.allowed_side_effects:
        not_allowed = [s for s in request.side_effects if s not in agent.allowed_side_effects]
        if not_allowed:
            return Refuse(
                RefusalCode.FORBIDDEN_SIDE_EFFECT,
                f"agent {agent.agent_id} is not allowed: {', '.join(not_allowed)} "
                f"(allowed: {', '.join(agent.allowed_side_effects)})",
            )
    if not model_allowed:
        return Refuse(RefusalCode.MODEL_NOT_ALLOWED, f"model {request.model!r} is not on the allow-list")
    return ALLOW


def counts_against_budget(state: JobState) -> bool:
    """Failed jobs (LLM errors, invalid output, timeouts) spend the agent's error budget."""
    return state is JobState.FAILED


def review_output(agent: AgentRecord, draft: PlanDraft) -> Verdict:
    """Turn a parsed plan into the final decision: low confidence or a forbidden step escalates."""
    flags: list[str] = []
    notes: list[str] = []
    if draft.confidence < agent.confidence_threshold:
        flags.append("low_confidence")
        notes.append(
            f"Confidence {draft.confidence:.2f} is below this agent's threshold "
            f"{agent.confidence_threshold:.2f}: a human should review the plan."
        )
    forbidden = set(agent.forbidden_actions)
    for step in draft.plan:
        for action in step.actions:
            if action in forbidden:
                flags.append(f"forbidden_action:step_{step.step}:{action}")
                notes.append(
                    f"Step {step.step} ({step.title}) needs '{action}', which agent "
                    f"{agent.agent_id} may not do: a human must carry it out or approve it."
                )
    for effect in draft.side_effects:
        if effect in forbidden:
            flags.append(f"forbidden_side_effect:{effect}")
            notes.append(f"The plan declares the forbidden side effect '{effect}'.")
    if flags and draft.decision in (Decision.EXECUTE, Decision.SKIP):
        return Verdict(Decision.ESCALATE, tuple(flags), tuple(notes))
    return Verdict(draft.decision, tuple(flags), tuple(notes))
