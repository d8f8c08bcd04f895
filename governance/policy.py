"""Policy as pure functions: plain data in, a decision out. No I/O here.

`preflight` decides whether a request may be planned at all; `review_output` turns a
parsed plan into the final decision and the flags that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.models import AgentRecord, PlanDraft, PlanRequest
from governance.vocabulary import Decision, RefusalCode, TaskType

# Task types each tier may plan for. A planner reads, analyses and plans; nothing else.
TIER_TASK_TYPES: dict[int, frozenset[str]] = {
    0: frozenset(TaskType),
}
DEFAULT_TASK_TYPES: frozenset[str] = frozenset(TaskType)


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
    agent: AgentRecord | None, request: PlanRequest, *, model_allowed: bool = True
) -> Allow | Refuse:
    """Decide whether `agent` may have `request` planned. Checks run cheapest and most final first."""
    if agent is None:
        return Refuse(RefusalCode.UNKNOWN_AGENT, f"agent {request.agent_id!r} is not registered")
    task_types = TIER_TASK_TYPES.get(agent.tier, DEFAULT_TASK_TYPES)
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
