"""The prompts of the PLAN phase: what the planner is told, and how a bad answer is sent back for repair."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any

from governance.models import AgentRecord, PlanDraft, PlanRequest
from plangate_base import codec

MAX_REPAIR_ERROR_CHARS = 4_000
MAX_REPAIR_ANSWER_CHARS = 16_000
REPAIR_MARKER = "Your previous answer was not a valid plan."


@cache
def plan_schema_text() -> str:
    """The JSON schema of PlanDraft as text (computed once)."""
    return json.dumps(PlanDraft.model_json_schema(), indent=1, sort_keys=True)


def _listing(items: tuple[str, ...]) -> str:
    return ", ".join(items) if items else "(none)"


def _introduction(agent: AgentRecord) -> str:
    """Who the agent is: its template's instructions when it was installed from one."""
    if agent.template is not None and agent.template.instructions:
        return agent.template.instructions
    return f"You are agent {agent.agent_id}, role {agent.role!r}, governance tier {agent.tier}."


def system_prompt(agent: AgentRecord) -> str:
    """The system message: who the agent is (its template's instructions, if any), what it may and may not
    do, and the output schema.

    One text per distinct agent configuration, shared by its jobs (a worker with 500 jobs in flight held
    500 copies of the same ~3 KB)."""
    return _system_prompt(
        _introduction(agent), tuple(agent.allowed_side_effects), tuple(agent.forbidden_actions)
    )


@lru_cache(maxsize=256)
def _system_prompt(introduction: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> str:
    return "\n".join(
        [
            introduction,
            "You plan; you never execute. You may read, analyse and plan. A plan is data: nothing in it "
            "runs, and a human decides whether to carry it out.",
            f"Allowed side effects (the only ones you may list in side_effects or step actions): "
            f"{_listing(allowed)}.",
            "Forbidden actions (never put these in any step's actions; if the task needs one, keep the step "
            "but set decision to ESCALATE and explain in notes_for_humans): "
            f"{_listing(forbidden)}.",
            "Decisions: EXECUTE when you produced a plan within these limits; ESCALATE when it needs human "
            "review; INSUFFICIENT_INFORMATION when the request lacks what you need; SKIP when it does not "
            "apply; ERROR when you cannot plan at all.",
            "confidence is your confidence in the plan, from 0.0 to 1.0. "
            "Number the plan steps 1..n in order.",
            "Answer with exactly one JSON object and nothing else (no prose, no code fences). "
            "It must validate against this JSON schema:",
            plan_schema_text(),
        ]
    )


def user_message(request: PlanRequest) -> str:
    """The user message: the task as one JSON object (task_type, description, constraints, context)."""
    task: dict[str, Any] = {
        "task_type": request.task_type,
        "description": request.description,
        "constraints": list(request.constraints),
        "context": request.context or {},
    }
    if request.side_effects:
        task["requested_side_effects"] = list(request.side_effects)
    return codec.dumps(task)


def build_messages(agent: AgentRecord, request: PlanRequest) -> list[dict[str, Any]]:
    """The chat messages of one planning call: system prompt, then the task."""
    return [
        {"role": "system", "content": system_prompt(agent)},
        {"role": "user", "content": user_message(request)},
    ]


def repair_messages(messages: list[dict[str, Any]], bad_text: str, error_text: str) -> list[dict[str, Any]]:
    """The conversation extended by the bad answer and a request to fix the validation error."""
    feedback = (
        f"{REPAIR_MARKER} It failed validation with:\n{error_text[:MAX_REPAIR_ERROR_CHARS]}\n"
        "Answer again with exactly one JSON object that validates against the schema in the system "
        "message, and nothing else."
    )
    return [
        *messages,
        {"role": "assistant", "content": bad_text[:MAX_REPAIR_ANSWER_CHARS]},
        {"role": "user", "content": feedback},
    ]
