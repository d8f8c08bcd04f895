"""PlanRequest limits and the output schema (pure, no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from governance.capabilities import SEED_ALLOWED_SIDE_EFFECTS, SEED_FORBIDDEN_ACTIONS
from governance.models import (
    MAX_CONTEXT_BYTES,
    SEED_AGENT,
    AgentOutput,
    AgentRecord,
    PlanDraft,
    PlanRequest,
)
from plangate_base.vocabulary import Decision, JobState
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


def test_every_agent_gets_the_seed_lists_whatever_its_tier_or_allow_list() -> None:
    agent = AgentRecord(agent_id="observer-2")
    assert agent.allowed_side_effects == list(SEED_ALLOWED_SIDE_EFFECTS)
    assert agent.forbidden_actions == list(SEED_FORBIDDEN_ACTIONS)
    for record in (
        AgentRecord(agent_id="operator-1", tier=1),
        AgentRecord(agent_id="operator-2", tier=3, allowed_side_effects=["read_logs"]),
        AgentRecord(
            agent_id="observer-3", allowed_side_effects=["read_docs"], forbidden_actions=["read_logs"]
        ),
    ):
        assert set(SEED_FORBIDDEN_ACTIONS) <= set(record.forbidden_actions), record.agent_id
        assert record.lifted_forbidden == []


def test_only_an_explicit_lift_removes_a_seed_forbidden_action() -> None:
    agent = AgentRecord(agent_id="ops", tier=2, lifted_forbidden=["Run_Terraform"], forbidden_actions=["ssh"])
    assert agent.lifted_forbidden == ["run_terraform"]
    assert "run_terraform" not in agent.forbidden_actions
    assert "ssh" in agent.forbidden_actions and agent.forbidden_actions.count("ssh") == 1
    # the stored form reads back as the same record
    assert AgentRecord.model_validate_json(agent.model_dump_json()) == agent


def test_agent_names_are_normalised_and_must_be_words() -> None:
    fullwidth_read_logs = "\uff32\uff25\uff21\uff24_\uff2c\uff2f\uff27\uff33"
    agent = AgentRecord(agent_id="a", allowed_side_effects=[" Read_Docs", "read_docs", fullwidth_read_logs])
    assert agent.allowed_side_effects == ["read_docs", "read_logs"]
    for bad in (
        "rm -rf /",
        "drop table",
        "read_docs\u200b",
        "",
    ):  # an operator's typo is refused, not guessed
        with pytest.raises(ValidationError, match="not a vocabulary word"):
            AgentRecord(agent_id="a", allowed_side_effects=[bad])


@pytest.mark.parametrize("agent_id", ["victim:key", "a:b", "x:state"])
def test_identifiers_may_not_contain_the_key_separator(agent_id: str) -> None:
    with pytest.raises(ValidationError):
        AgentRecord(agent_id=agent_id)
    with pytest.raises(BadRequest, match="agent_id"):
        to_request(_request(agent_id=agent_id))


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
