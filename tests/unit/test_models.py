"""PlanRequest limits and the output schema (pure, no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from governance.models import (
    MAX_CONTEXT_BYTES,
    SEED_AGENT,
    TIER0_ALLOWED_SIDE_EFFECTS,
    TIER0_FORBIDDEN_ACTIONS,
    AgentOutput,
    AgentRecord,
    PlanDraft,
    PlanRequest,
)
from governance.vocabulary import Decision, JobState
from worker.client import to_request
from worker.errors import BadRequest


def _request(**fields: object) -> dict[str, object]:
    return {"agent_id": "llm-planner-001", "description": "Plan a staging rollout", **fields}


def test_minimal_request_gets_defaults() -> None:
    req = PlanRequest.model_validate(_request())
    assert (req.tenant_id, req.task_type, req.constraints, req.context) == ("default", "plan", [], None)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"description": "x" * 8_001}, "description"),
        ({"description": "   "}, "description"),
        ({"description": "bad\x00byte"}, "description"),
        ({"constraints": ["c"] * 51}, "constraints"),
        ({"constraints": ["ok", "bell\x07"]}, "constraints"),
        ({"context": {"blob": "x" * MAX_CONTEXT_BYTES}}, "context"),
        ({"agent_id": "has space"}, "agent_id"),
        ({"task_type": "Plan Things"}, "task_type"),
        ({"unexpected": 1}, "unexpected"),
        ({"constraints": "not a list"}, "constraints"),
    ],
)
def test_request_limits_raise_bad_request_naming_the_field(fields: dict[str, object], where: str) -> None:
    with pytest.raises(BadRequest) as info:
        to_request(_request(**fields))
    message = str(info.value)
    assert message.startswith("invalid request:")
    assert where in message


def test_limits_at_the_edge_are_accepted() -> None:
    req = PlanRequest.model_validate(
        _request(
            description="d" * 8_000, constraints=["c"] * 50, context={"blob": "x" * (MAX_CONTEXT_BYTES - 20)}
        )
    )
    assert len(req.constraints) == 50


def test_tier0_agent_without_lists_gets_the_seed_lists() -> None:
    agent = AgentRecord(agent_id="observer-2")
    assert agent.allowed_side_effects == list(TIER0_ALLOWED_SIDE_EFFECTS)
    assert agent.forbidden_actions == list(TIER0_FORBIDDEN_ACTIONS)
    tier1 = AgentRecord(agent_id="operator-1", tier=1, allowed_side_effects=["read_logs"])
    assert tier1.forbidden_actions == []


def test_seed_agent_matches_the_seed_metadata() -> None:
    assert SEED_AGENT.agent_id == "llm-planner-001"
    assert (SEED_AGENT.role, SEED_AGENT.tier, SEED_AGENT.confidence_threshold) == ("observer", 0, 0.7)
    assert "run_terraform" in SEED_AGENT.forbidden_actions
    assert "generate_plan" in SEED_AGENT.allowed_side_effects


def _draft(**fields: object) -> dict[str, object]:
    return {
        "action": "plan rollout",
        "decision": "EXECUTE",
        "confidence": 0.9,
        "plan": [{"step": 1, "title": "Read docs"}, {"step": 2, "title": "Write plan"}],
        **fields,
    }


def test_plan_draft_requires_ordered_steps_and_bounded_confidence() -> None:
    assert len(PlanDraft.model_validate(_draft()).plan) == 2
    with pytest.raises(ValidationError, match=r"numbered 1\.\.n"):
        PlanDraft.model_validate(_draft(plan=[{"step": 2, "title": "b"}, {"step": 1, "title": "a"}]))
    with pytest.raises(ValidationError):
        PlanDraft.model_validate(_draft(confidence=1.5))
    with pytest.raises(ValidationError):
        PlanDraft.model_validate(_draft(decision="MAYBE"))


def test_agent_output_carries_every_foundation_field() -> None:
    out = AgentOutput.model_validate(
        {**_draft(), "agent_id": "a", "version": "0.1.0", "timestamp": "2026-11-25T00:00:00.000Z"}
    )
    for name in (
        "agent_id",
        "version",
        "timestamp",
        "action",
        "decision",
        "confidence",
        "assumptions",
        "dependencies",
        "side_effects",
        "notes_for_humans",
        "plan",
    ):
        assert name in out.model_dump()
    assert out.decision is Decision.EXECUTE


def test_terminal_states() -> None:
    assert {s for s in JobState if s.terminal} == {
        JobState.DONE,
        JobState.REFUSED,
        JobState.FAILED,
        JobState.CANCELLED,
    }
