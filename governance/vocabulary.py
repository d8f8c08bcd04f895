"""The words of plangate, defined once: job states, phases, decisions and refusal codes.

These enums are the only spelling used in code, Redis, the ledger, the CLI and the docs.
They live in `governance` because policy decides them; `worker` re-uses them and
`ledger` stores their string values.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its lifecycle: queued -> running -> one terminal state."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.DONE, JobState.REFUSED, JobState.FAILED, JobState.CANCELLED}
)


class Phase(StrEnum):
    """The four phases a running job goes through, in this order (the seed's AgentPhase)."""

    PREFLIGHT = "PREFLIGHT"
    PLAN = "PLAN"
    VALIDATE = "VALIDATE"
    RECORD = "RECORD"


class Decision(StrEnum):
    """The seed's decision types carried by an AgentOutput."""

    EXECUTE = "EXECUTE"
    SKIP = "SKIP"
    ESCALATE = "ESCALATE"
    INSUFFICIENT_INFORMATION = "INSUFFICIENT_INFORMATION"
    ERROR = "ERROR"


class RefusalCode(StrEnum):
    """Why PREFLIGHT refused a job (no LLM call was made)."""

    UNKNOWN_AGENT = "unknown_agent"
    REVOKED = "revoked"
    TIER_FORBIDS_TASK = "tier_forbids_task"
    FORBIDDEN_SIDE_EFFECT = "forbidden_side_effect"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    LOCKED = "locked"
    ERROR_BUDGET_EXHAUSTED = "error_budget_exhausted"
    QUOTA_EXCEEDED = "quota_exceeded"
    TENANT_MISMATCH = "tenant_mismatch"
    UNAUTHENTICATED = "unauthenticated"
    BAD_REQUEST = "bad_request"


class CancelReason(StrEnum):
    """Why a job ended `cancelled`."""

    BY_SUBMITTER = "cancelled_by_submitter"
    REVOKED = "revoked"


class TaskType(StrEnum):
    """Task types a planner accepts. A planner reads, analyses and plans; it never executes."""

    PLAN = "plan"
    ANALYZE = "analyze"
    REVIEW = "review"


SEED_AGENT_ID = "llm-planner-001"
"""The seed's tier-0 observer (the LLM Planner agent): registered by default, the CLI's default agent."""
