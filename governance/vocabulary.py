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


class FailureCode(StrEnum):
    """Why a job ended `failed`: a typed error from the LLM call, the pipeline or the watchdog."""

    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_STREAM_ERROR = "llm_stream_error"
    LLM_ANSWER_TOO_LARGE = "llm_answer_too_large"  # a line or the whole answer past its size cap
    LLM_OUT_OF_CREDITS = "llm_out_of_credits"
    LLM_REQUEST_REJECTED = "llm_request_rejected"
    INVALID_OUTPUT = "invalid_output"
    JOB_TIMEOUT = "job_timeout"  # it ran past JOB_TIMEOUT_S
    TRIES_EXHAUSTED = "tries_exhausted"  # the job was tried JOB_TRIES times
    ABANDONED = "abandoned"  # its worker died, and the arq job was gone when another took over
    PAYLOAD_LOST = "payload_lost"  # arq's payload of the queued job is missing or empty
    PAYLOAD_UNREADABLE = "payload_unreadable"  # arq's payload or try count of the queued job is unusable
    INTERNAL_ERROR = "internal_error"  # an unexpected error in the pipeline


class ReviewDecision(StrEnum):
    """A human reviewer's decision on an escalated plan."""

    APPROVED = "approved"
    REJECTED = "rejected"


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
