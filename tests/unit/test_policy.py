"""Governance decisions, table by table: plain data in, decision out (no Redis, no event loop)."""

from __future__ import annotations

import pytest

from governance.capabilities import BUILTIN_VOCABULARY
from governance.models import (
    DEFAULT_TENANT,
    SEED_AGENT,
    AgentRecord,
    AgentState,
    PlanDraft,
    PlanRequest,
    TenantRecord,
)
from governance.policy import (
    Allow,
    LinkedJob,
    Refuse,
    check_links,
    counts_against_budget,
    has_unknown_names,
    preflight,
    review_output,
)
from plangate_base.vocabulary import Decision, FailureCode, JobState, RefusalCode, ReviewDecision


def _req(**fields: object) -> PlanRequest:
    return PlanRequest.model_validate({"agent_id": SEED_AGENT.agent_id, "description": "plan it", **fields})


OK = AgentState()
OPERATOR = AgentRecord(
    agent_id="op",
    tier=1,
    allowed_task_types=["plan", "capacity_review"],
    allowed_side_effects=["run_terraform"],
    lifted_forbidden=["run_terraform"],
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
    (OPERATOR, OK, {"agent_id": "op", "side_effects": ["ssh"]}, True, RefusalCode.FORBIDDEN_SIDE_EFFECT),
    (SEED_AGENT, OK, {"side_effects": ["SSH"]}, True, RefusalCode.FORBIDDEN_SIDE_EFFECT),
    (SEED_AGENT, OK, {"side_effects": ["Read_Docs"]}, True, None),
    (
        AgentRecord(agent_id="t1", tier=1),
        OK,
        {"agent_id": "t1", "side_effects": ["run_terraform"]},
        True,
        RefusalCode.FORBIDDEN_SIDE_EFFECT,
    ),
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


def test_only_the_agents_own_failures_spend_its_error_budget() -> None:
    counted = {(s, c) for s in JobState for c in FailureCode if counts_against_budget(s, c)}
    assert counted == {(JobState.FAILED, FailureCode.INVALID_OUTPUT)}
    # the endpoint's faults, plangate's and the worker's never suspend an agent
    for code in FailureCode:
        if code is not FailureCode.INVALID_OUTPUT:
            assert not counts_against_budget(JobState.FAILED, code)
    assert not counts_against_budget(JobState.FAILED, None)


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


def test_a_lifted_forbidden_action_is_what_lets_an_agent_plan_it() -> None:
    lifted = AgentRecord(
        agent_id="op",
        tier=1,
        allowed_side_effects=["read_inventory", "run_terraform"],
        lifted_forbidden=["run_terraform"],
    )
    assert isinstance(preflight(lifted, OK, _req(agent_id="op", side_effects=["run_terraform"])), Allow)
    assert review_output(lifted, _draft(actions=["run_terraform"])).decision is Decision.EXECUTE
    # allowed but not lifted: forbidden still wins (a record stored before lists were checked)
    unlifted = AgentRecord(agent_id="op", tier=1, allowed_side_effects=["read_inventory", "run_terraform"])
    verdict = review_output(unlifted, _draft(actions=["run_terraform"]))
    assert verdict.decision is Decision.ESCALATE
    assert verdict.flags == ("forbidden_action:step_2:run_terraform",)


# Agents an operator could add today, none of which may plan any of the hostile names below.
AGENTS = [
    SEED_AGENT,
    AgentRecord(agent_id="tier1", tier=1),
    AgentRecord(agent_id="narrow", allowed_side_effects=["read_docs", "read_inventory"]),
    AgentRecord(agent_id="tier3", tier=3, allowed_side_effects=["read_inventory", "generate_plan"]),
]
HOSTILE_ACTIONS = [
    ("Execute_Shell", "forbidden_action:step_2:execute_shell"),
    ("sudo rm -rf /", "unknown_action:step_2:sudo rm -rf /"),
    ("drop_database", "unknown_action:step_2:drop_database"),
    ("kubectl_delete_namespace", "unknown_action:step_2:kubectl_delete_namespace"),
    ("SSH", "forbidden_action:step_2:ssh"),
    (" ssh", "forbidden_action:step_2:ssh"),
    ("ssh\u200b", "forbidden_action:step_2:ssh"),
    ("\uff53\uff53\uff48", "forbidden_action:step_2:ssh"),  # fullwidth letters: NFKC
    ("run_terraform", "forbidden_action:step_2:run_terraform"),
    # Cyrillic look-alikes of ssh: unknown, never ssh
    ("\u0455\u0455\u04bb", "unknown_action:step_2:\\u0455\\u0455\\u04bb"),
    ("", "unknown_action:step_2:"),
]


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: a.agent_id)
@pytest.mark.parametrize(("action", "flag"), HOSTILE_ACTIONS)
def test_every_action_outside_the_allowed_list_escalates_with_a_flag_naming_it(
    agent: AgentRecord, action: str, flag: str
) -> None:
    for decision in ("EXECUTE", "SKIP", "INSUFFICIENT_INFORMATION", "ERROR"):
        verdict = review_output(agent, _draft(decision=decision, actions=[action]))
        assert verdict.decision is Decision.ESCALATE, (decision, action)
        assert flag in verdict.flags
        assert len(verdict.notes) == len(verdict.flags)


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: a.agent_id)
@pytest.mark.parametrize(
    ("effect", "flag"),
    [
        ("write_prod_db", "unknown_side_effect:write_prod_db"),
        ("network_egress", "unknown_side_effect:network_egress"),
        ("Write_Secrets", "forbidden_side_effect:write_secrets"),
    ],
)
def test_every_declared_side_effect_outside_the_allowed_list_escalates(
    agent: AgentRecord, effect: str, flag: str
) -> None:
    draft = PlanDraft.model_validate(
        {"action": "a", "decision": "EXECUTE", "confidence": 0.95, "side_effects": ["read_inventory", effect]}
    )
    verdict = review_output(agent, draft)
    assert verdict.decision is Decision.ESCALATE and flag in verdict.flags


def test_a_known_word_the_agent_is_not_allowed_is_flagged_not_allowed() -> None:
    narrow = AGENTS[2]
    verdict = review_output(narrow, _draft(actions=["read_logs"]))
    assert verdict.decision is Decision.ESCALATE
    assert verdict.flags == ("not_allowed_action:step_2:read_logs",)
    # a word operators added is known (not_allowed, not unknown), yet still outside the agent's list
    assert has_unknown_names(review_output(narrow, _draft(actions=["read_metrics"])))
    known = BUILTIN_VOCABULARY | {"read_metrics"}
    extended = review_output(narrow, _draft(actions=["read_metrics"]), known)
    assert extended.flags == ("not_allowed_action:step_2:read_metrics",) and not has_unknown_names(extended)


def test_a_flag_never_carries_invisible_or_separator_characters() -> None:
    verdict = review_output(SEED_AGENT, _draft(actions=["drop,table\u202e\x00" + "x" * 500]))
    (flag,) = verdict.flags
    assert flag.isascii() and "," not in flag and "\u202e" not in flag and len(flag) < 200


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


def _linked(
    tenant: str = "default", state: JobState = JobState.DONE, review: ReviewDecision | None = None
) -> LinkedJob:
    return LinkedJob("j1", tenant, state, state is JobState.DONE, review)


@pytest.mark.parametrize(
    ("fields", "handoff", "retry", "refused"),
    [
        ({"handoff_from": "j1"}, _linked(), None, False),
        ({"handoff_from": "j1"}, _linked(review=ReviewDecision.APPROVED), None, False),
        ({"handoff_from": "j1"}, _linked(review=ReviewDecision.REJECTED), None, True),
        ({"handoff_from": "j1"}, _linked(tenant="globex"), None, True),
        ({"handoff_from": "j1"}, None, None, True),
        ({"handoff_from": "j1"}, _linked(state=JobState.FAILED), None, True),
        ({"retry_of": "j1"}, None, _linked(state=JobState.FAILED), False),
        ({"retry_of": "j1"}, None, _linked(tenant="globex", state=JobState.FAILED), True),
        ({"retry_of": "j1"}, None, None, True),
        ({}, None, None, False),
    ],
)
def test_a_request_names_only_its_own_tenants_jobs_and_never_a_rejected_plan(
    fields: dict, handoff: LinkedJob | None, retry: LinkedJob | None, refused: bool
) -> None:
    refusal = check_links(_req(**fields), handoff, retry)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.code is RefusalCode.BAD_REQUEST
        assert "globex" not in refusal.reason  # another tenant's job reads as a missing one
