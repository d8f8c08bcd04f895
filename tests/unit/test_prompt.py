"""The prompts tell the planner who it is, what it may do, and the schema; repair feeds the error back."""

from __future__ import annotations

import json

from governance.capabilities import SEED_ALLOWED_SIDE_EFFECTS, SEED_FORBIDDEN_ACTIONS
from governance.models import (
    SEED_AGENT,
    AgentRecord,
    PlanDraft,
    PlanRequest,
)
from worker.prompt import build_messages, plan_schema_text, repair_messages

REQUEST = PlanRequest(
    agent_id="llm-planner-001",
    task_type="analyze",
    description="Find why the backup job fails on host db-7",
    constraints=["read-only", "no restarts"],
    context={"logs": ["backup: permission denied"]},
)


def test_system_prompt_states_identity_tier_lists_and_schema() -> None:
    system, _user = build_messages(SEED_AGENT, REQUEST)
    text = system["content"]
    assert system["role"] == "system"
    assert "llm-planner-001" in text
    assert "'observer'" in text
    assert "tier 0" in text
    assert "never execute" in text
    for effect in SEED_ALLOWED_SIDE_EFFECTS:
        assert effect in text
    for action in SEED_FORBIDDEN_ACTIONS:
        assert action in text
    assert plan_schema_text() in text
    assert json.loads(plan_schema_text()) == PlanDraft.model_json_schema()


def test_system_prompt_follows_the_agent_record() -> None:
    agent = AgentRecord(
        agent_id="ops-reviewer",
        role="reviewer",
        tier=2,
        allowed_side_effects=["read_logs"],
        forbidden_actions=["read_inventory"],
        lifted_forbidden=["delete_vm"],
    )
    text = build_messages(agent, REQUEST)[0]["content"]
    assert "ops-reviewer" in text and "'reviewer'" in text and "tier 2" in text
    allowed_line = next(line for line in text.splitlines() if line.startswith("Allowed side effects"))
    forbidden_line = next(line for line in text.splitlines() if line.startswith("Forbidden actions"))
    assert allowed_line.endswith("read_logs.")
    assert forbidden_line.endswith("read_inventory.") and "delete_vm" not in forbidden_line
    assert "ssh" in forbidden_line and "run_terraform" in forbidden_line  # the seed's list holds for all


def test_agents_configured_alike_share_one_system_text_and_a_change_makes_a_new_one() -> None:
    first = AgentRecord.model_validate_json(SEED_AGENT.model_dump_json())
    again = AgentRecord.model_validate_json(SEED_AGENT.model_dump_json())
    assert build_messages(first, REQUEST)[0]["content"] is build_messages(again, REQUEST)[0]["content"]
    changed = first.model_copy(update={"forbidden_actions": [*first.forbidden_actions, "reboot_host"]})
    forbidden_line = next(
        line
        for line in build_messages(changed, REQUEST)[0]["content"].splitlines()
        if line.startswith("Forbidden actions")
    )
    assert forbidden_line.endswith("reboot_host.")


def test_user_message_carries_the_task_as_json() -> None:
    _system, user = build_messages(SEED_AGENT, REQUEST)
    assert user["role"] == "user"
    task = json.loads(user["content"])
    assert task == {
        "task_type": "analyze",
        "description": "Find why the backup job fails on host db-7",
        "constraints": ["read-only", "no restarts"],
        "context": {"logs": ["backup: permission denied"]},
    }


def test_repair_messages_append_bad_answer_and_error_without_mutating() -> None:
    messages = build_messages(SEED_AGENT, REQUEST)
    before = [dict(m) for m in messages]
    repaired = repair_messages(messages, "not json at all", "Invalid JSON: expected value at line 1")
    assert messages == before
    assert repaired[: len(messages)] == messages
    assert len(repaired) == len(messages) + 2
    assert repaired[-2] == {"role": "assistant", "content": "not json at all"}
    assert repaired[-1]["role"] == "user"
    assert "Invalid JSON: expected value at line 1" in repaired[-1]["content"]
    assert "not a valid plan" in repaired[-1]["content"]
