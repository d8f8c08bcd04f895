"""The words of plangate, defined once: job states, phases, decisions, refusal and failure codes,
ledger event kinds and job-stream kinds.

These enums are the only spelling used in code, Lua, Redis, the ledger, the CLI and the docs. They
live in the shared bottom layer so that `governance` (which decides them), `worker` (which writes
them) and `ledger` (which stores and projects them) all use the same ones.
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
    DEADLINE_EXCEEDED = "deadline_exceeded"  # its deadline passed before it started


class ReviewDecision(StrEnum):
    """A human reviewer's decision on an escalated plan."""

    APPROVED = "approved"
    REJECTED = "rejected"


class EventKind(StrEnum):
    """The kind of a ledger event: what happened to a job, an agent or the governance data."""

    SUBMITTED = "submitted"  # a producer enqueued the job
    ADMITTED = "admitted"  # the tenant's quota admitted it (only for tenants with limits)
    LOCK_WAIT = "lock_wait"  # it waits for a lock another job holds
    HANDED_BACK = "handed_back"  # its worker shut down and returned it to the queue
    TAKEN_OVER = "taken_over"  # a watchdog returned it to the queue (its worker went silent)
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # the agent spent its error budget
    REVIEW_APPROVED = "review_approved"
    REVIEW_REJECTED = "review_rejected"
    REVOKED = "revoked"  # an operator stopped the agent
    RESTORED = "restored"  # an operator lifted the revocation
    BUDGET_RESET = "budget_reset"  # an operator forgot the agent's counted failures
    AGENT_SAVED = "agent_saved"
    KEY_ISSUED = "key_issued"
    TOKEN_REVOKED = "token_revoked"  # an operator revoked an API token
    REVIEWER_SAVED = "reviewer_saved"
    VOCABULARY_EXTENDED = "vocabulary_extended"
    WEBHOOK_DELIVERED = "webhook_delivered"  # a receiver took the job's terminal event (once per job)
    TEMPLATE_INSTALLED = "template_installed"  # an agent was installed from a template version
    TEMPLATE_UPGRADED = "template_upgraded"  # an agent moved to another version of its template
    PAUSED = "paused"  # an operator paused a tenant, an agent or the whole queue
    RESUMED = "resumed"  # an operator resumed it
    MALFORMED = "malformed"  # written by the ledger writer only: a stream entry it could not read
    LOST = "lost"  # reconciliation: submitted, never ended, and its status is gone from Redis
    REDACTED = "redacted"  # an operator replaced payloads with tombstones (who, what, why)


TERMINAL_EVENT_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.DONE, EventKind.REFUSED, EventKind.FAILED, EventKind.CANCELLED}
)
"""The ledger event that ends a job: one per terminal JobState, spelled the same."""

AGENT_EVENT_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.REVOKED, EventKind.RESTORED, EventKind.SUSPENDED, EventKind.BUDGET_RESET}
)
"""The events that change an agent's live state (revoked, suspended)."""


def review_event_kind(decision: ReviewDecision) -> EventKind:
    """The ledger event of a reviewer's decision."""
    return EventKind.REVIEW_APPROVED if decision is ReviewDecision.APPROVED else EventKind.REVIEW_REJECTED


class WebhookEvent(StrEnum):
    """The event types a webhook endpoint subscribes to (the `type` of a delivery's body)."""

    JOB_TERMINAL = "job.terminal"  # the job ended (any terminal state)
    REVIEW_REQUESTED = "review.requested"  # the job ended ESCALATE and waits for a reviewer
    REVIEW_DECIDED = "review.decided"  # a reviewer approved or rejected the plan
    AGENT_REVOKED = "agent.revoked"  # an operator revoked one of the tenant's agents
    LEDGER_CHECKPOINT = "ledger.checkpoint"  # the ledger writer signed a checkpoint (deployment-wide)


JOB_WEBHOOK_EVENTS: frozenset[WebhookEvent] = frozenset(
    {WebhookEvent.JOB_TERMINAL, WebhookEvent.REVIEW_REQUESTED, WebhookEvent.REVIEW_DECIDED}
)
"""The events about one job: what a job's own `callback_url` receives."""

DEPLOYMENT_WEBHOOKS = "*"
"""The owner of the deployment-wide webhook endpoints, in the place of a tenant id (`*` is in no tenant id,
so no tenant token is ever its own): only admin and auditor tokens manage them."""

DEPLOYMENT_WEBHOOK_EVENTS: frozenset[WebhookEvent] = frozenset({WebhookEvent.LEDGER_CHECKPOINT})
"""The events about the whole deployment, not one tenant: only DEPLOYMENT_WEBHOOKS endpoints take them
(and take nothing else)."""


class DeliveryState(StrEnum):
    """Where one webhook delivery (one event to one endpoint) is."""

    PENDING = "pending"  # due now or at its next try
    DELIVERED = "delivered"  # a 2xx answer
    DEAD = "dead"  # gave up: a 4xx other than 429, a redirect, a refused address, or out of retry time


class AttemptOutcome(StrEnum):
    """What one delivery attempt led to."""

    DELIVERED = "delivered"
    RETRY = "retry"  # a timeout, a connection error, 5xx or 429: tried again later
    DEAD = "dead"


class RequeueReason(StrEnum):
    """Why a running job went back to the queue (the reason of handed_back and taken_over events)."""

    SHUTDOWN = "shutdown"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"


class Priority(StrEnum):
    """A job's priority within its tenant: higher goes first, and a job older than the aging window is not
    overtaken by newer higher ones (worker.fair_queue; PRIORITY_AGING_S)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for the highest: how many aging windows later a job of this priority counts as submitted."""
        return list(Priority).index(self)


class PauseScope(StrEnum):
    """What an operator pauses: one tenant's work, one agent's, or the whole queue's."""

    ALL = "all"
    TENANT = "tenant"
    AGENT = "agent"


class StreamKind(StrEnum):
    """The kind of an entry in a job's event stream (what `plangate watch` shows)."""

    PHASE = "phase"  # the job entered a phase (or went back to the queue)
    PROGRESS = "progress"  # a heartbeat during PLAN with the token count so far
    TERMINAL = "terminal"  # the job ended; the last entry


LEDGER_STREAM_FIELD = "e"
"""The one field of a ledger stream entry; its value is the event as a JSON object."""

NOW_MS = "__NOW_MS__"
"""A ledger event's placeholder (a JSON string) that the Lua writing it replaces by the Redis server's
clock in milliseconds, the one clock every worker shares."""


class CancelReason(StrEnum):
    """Why a job ended `cancelled`."""

    BY_SUBMITTER = "cancelled_by_submitter"
    BY_OPERATOR = "cancelled_by_operator"  # a bulk cancel
    REVOKED = "revoked"


class TaskType(StrEnum):
    """Task types a planner accepts. A planner reads, analyses and plans; it never executes."""

    PLAN = "plan"
    ANALYZE = "analyze"
    REVIEW = "review"


class CheckStatus(StrEnum):
    """What one `plangate doctor` check found: fine, worth a look, or wrong (the command exits 1)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    @property
    def gauge(self) -> int:
        """The check's value on the `plangate_doctor_check` gauge: 0 ok, 1 warn, 2 fail."""
        return _CHECK_GAUGE[self]


_CHECK_GAUGE = {CheckStatus.OK: 0, CheckStatus.WARN: 1, CheckStatus.FAIL: 2}


SEED_AGENT_ID = "llm-planner-001"
"""The seed's tier-0 observer (the LLM Planner agent): registered by default, the CLI's default agent."""
