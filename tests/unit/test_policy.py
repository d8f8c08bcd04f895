"""Governance decisions, table by table: plain data in, decision out (no Redis, no event loop)."""

from __future__ import annotations

import pytest

from governance.models import (
    DEFAULT_TENANT,
    SEED_AGENT,
    AgentRecord,
    AgentState,
    PlanDraft,
    PlanRequest,
    TenantRecord,
)
from governance.policy import Allow, Refuse, counts_against_budget, preflight, review_output
from governance.vocabulary import Decision, JobState, RefusalCode


def _req(**fields: object) -> PlanRequest:
    return PlanRequest.model_validate({"agent_id": SEED_AGENT.agent_id, "description": "plan it", **fields})


OK = AgentState()
OPERATOR = AgentRecord(
    agent_id="op",
    tier=1,
    allowed_task_types=["plan", "capacity_review"],
    allowed_side_effects=["run_terraform"],
)


PREFLIGHT_CASES = [
    (SEED_AGENT, OK, {}, True, None),
    (SEED_AGENT, OK, {"side_effects": ["read_docs", "generate_plan"]}, True, None),
    (None, OK, {}, True, RefusalCode.UNKNOWN_AGENT),
    (SEED_AGENT, AgentState(revoked=True, revoked_reason="leaked key"), {}, True, RefusalCode.REVOKED),
    (SEED_AGENT, AgentState(suspended=True), {}, True, RefusalCode.ERROR_BUDGET_EXHAUSTED),
    (SEED_AGENT, AgentState(recent_errors=5), {}, True, RefusalCode.ERROR_BUDGET_EXHAUSTED),
    (SEED_AGENT, AgentState(recent_errors=4), {}, True, None),
    (SEED_AGENT, OK, {"side_effects": ["run_terraform"]}, True, RefusalCode.FORBIDDEN_SIDE_EFFECT),
    (SEED_AGENT, OK, {"side_effects": ["read_docs", "ssh"]}, True, RefusalCode.FORBIDDEN_SIDE_EFFECT),
    (SEED_AGENT, OK, {"side_effects": ["send_email"]}, True, RefusalCode.FORBIDDEN_SIDE_EFFECT),
    (SEED_AGENT, OK, {"task_type": "deploy"}, True, RefusalCode.TIER_FORBIDS_TASK),
    (SEED_AGENT, OK, {"task_type": "capacity_review"}, True, RefusalCode.TIER_FORBIDS_TASK),
    (SEED_AGENT, OK, {"task_type": "analyze"}, True, None),
    (SEED_AGENT, OK, {"task_type": "review"}, True, None),
    (SEED_AGENT, OK, {"model": "other"}, False, RefusalCode.MODEL_NOT_ALLOWED),
    (OPERATOR, OK, {"agent_id": "op", "task_type": "capacity_review"}, True, None),
    (OPERATOR, OK, {"agent_id": "op", "task_type": "analyze"}, True, RefusalCode.TIER_FORBIDS_TASK),
    (OPERATOR, OK, {"agent_id": "op", "side_effects": ["run_terraform"]}, True, None),
    (SEED_AGENT, OK, {"tenant_id": "acme"}, True, RefusalCode.TENANT_MISMATCH),
    (SEED_AGENT, OK, {"project_id": "apollo"}, True, RefusalCode.TENANT_MISMATCH),
    # revocation is the most final: it wins over every other reason
    (
        SEED_AGENT,
        AgentState(revoked=True, suspended=True),
        {"task_type": "deploy"},
        True,
        RefusalCode.REVOKED,
    ),
]


@pytest.mark.parametrize(("agent", "state", "fields", "model_allowed", "expected"), PREFLIGHT_CASES)
def test_preflight(
    agent: AgentRecord | None,
    state: AgentState,
    fields: dict,
    model_allowed: bool,
    expected: RefusalCode | None,
) -> None:
    verdict = preflight(agent, state, _req(**fields), model_allowed=model_allowed)
    if expected is None:
        assert isinstance(verdict, Allow)
    else:
        assert isinstance(verdict, Refuse)
        assert verdict.code is expected
        assert verdict.reason


def test_every_refusal_reason_names_its_cause() -> None:
    revoked = preflight(SEED_AGENT, AgentState(revoked=True, revoked_reason="leaked key"), _req())
    assert isinstance(revoked, Refuse) and "leaked key" in revoked.reason
    spent = preflight(SEED_AGENT, AgentState(suspended=True, recent_errors=5), _req())
    assert isinstance(spent, Refuse) and "reset-budget" in spent.reason
    forbidden = preflight(SEED_AGENT, OK, _req(side_effects=["ssh"]))
    assert isinstance(forbidden, Refuse) and "ssh" in forbidden.reason


def test_only_failures_spend_the_error_budget() -> None:
    assert [s for s in JobState if counts_against_budget(s)] == [JobState.FAILED]


def _draft(confidence: float = 0.9, decision: str = "EXECUTE", actions: list[str] | None = None) -> PlanDraft:
    return PlanDraft.model_validate(
        {
            "action": "plan",
            "decision": decision,
            "confidence": confidence,
            "plan": [
                {"step": 1, "title": "Read the inventory", "actions": ["read_inventory"]},
                {"step": 2, "title": "Apply infrastructure", "actions": actions or []},
            ],
        }
    )


@pytest.mark.parametrize(
    ("draft", "decision", "flag_prefix"),
    [
        (_draft(), Decision.EXECUTE, None),
        (_draft(confidence=0.7), Decision.EXECUTE, None),  # at the threshold is enough
        (_draft(confidence=0.69), Decision.ESCALATE, "low_confidence"),
        (_draft(actions=["run_terraform"]), Decision.ESCALATE, "forbidden_action:step_2:run_terraform"),
        (
            _draft(decision="INSUFFICIENT_INFORMATION", confidence=0.2),
            Decision.INSUFFICIENT_INFORMATION,
            "low",
        ),
        (_draft(decision="SKIP", actions=["ssh"]), Decision.ESCALATE, "forbidden_action"),
        (_draft(decision="ERROR", confidence=0.9), Decision.ERROR, None),
        (_draft(decision="ESCALATE", confidence=0.9), Decision.ESCALATE, None),
        (
            _draft(decision="ESCALATE", actions=["delete_vm"]),
            Decision.ESCALATE,
            "forbidden_action:step_2:delete_vm",
        ),
    ],
)
def test_review_output(draft: PlanDraft, decision: Decision, flag_prefix: str | None) -> None:
    verdict = review_output(SEED_AGENT, draft)
    assert verdict.decision is decision
    if flag_prefix is None:
        assert verdict.flags == () and verdict.notes == ()
    else:
        assert any(f.startswith(flag_prefix) for f in verdict.flags)
        assert len(verdict.notes) == len(verdict.flags)


def test_forbidden_step_is_named_in_the_notes() -> None:
    verdict = review_output(SEED_AGENT, _draft(actions=["run_terraform"]))
    assert any("Step 2" in n and "run_terraform" in n for n in verdict.notes)


def test_tier1_agent_may_plan_what_tier0_may_not() -> None:
    operator = AgentRecord(
        agent_id="op", tier=1, allowed_side_effects=["run_terraform"], forbidden_actions=[]
    )
    assert isinstance(preflight(operator, OK, _req(agent_id="op", side_effects=["run_terraform"])), Allow)
    assert review_output(operator, _draft(actions=["run_terraform"])).decision is Decision.EXECUTE


def test_a_forbidden_side_effect_declared_by_the_plan_escalates() -> None:
    draft = PlanDraft.model_validate(
        {"action": "a", "decision": "EXECUTE", "confidence": 0.95, "side_effects": ["write_secrets"]}
    )
    verdict = review_output(SEED_AGENT, draft)
    assert verdict.decision is Decision.ESCALATE and verdict.flags == ("forbidden_side_effect:write_secrets",)


def test_the_preflight_table_covers_every_policy_reason_code() -> None:
    # Decided elsewhere: bad_request (the request does not parse), locked (the lock adapter),
    # quota_exceeded (tenant quotas, a later issue).
    decided_elsewhere = {
        RefusalCode.BAD_REQUEST,  # the request does not parse
        RefusalCode.LOCKED,  # the lock adapter
        RefusalCode.QUOTA_EXCEEDED,  # governance.quota (tested in test_quota)
        RefusalCode.UNAUTHENTICATED,  # governance.agent_keys (tested in test_quota)
    }
    covered = {case[-1] for case in PREFLIGHT_CASES}
    assert set(RefusalCode) - decided_elsewhere <= covered


ACME = TenantRecord(tenant_id="acme", projects=["apollo"])
ACME_AGENT = AgentRecord(agent_id="acme-planner", tenant_id="acme")


@pytest.mark.parametrize(
    ("tenant", "fields", "expected"),
    [
        (ACME, {"tenant_id": "acme"}, None),
        (ACME, {"tenant_id": "acme", "project_id": "apollo"}, None),
        (ACME, {"tenant_id": "acme", "project_id": "gemini"}, RefusalCode.TENANT_MISMATCH),
        (None, {"tenant_id": "ghost"}, RefusalCode.TENANT_MISMATCH),
        (DEFAULT_TENANT, {"tenant_id": "default"}, RefusalCode.TENANT_MISMATCH),  # agent is acme's
    ],
)
def test_tenants(tenant: TenantRecord | None, fields: dict, expected: RefusalCode | None) -> None:
    verdict = preflight(ACME_AGENT, OK, _req(agent_id="acme-planner", **fields), tenant=tenant)
    assert (verdict.code if isinstance(verdict, Refuse) else None) is expected
