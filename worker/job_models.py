"""The job status object and the events of a job's stream, and how both are read from Redis."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from governance.models import AgentOutput
from governance.policy import LinkedJob
from plangate_base import codec
from plangate_base.vocabulary import (
    AttemptOutcome,
    JobState,
    Phase,
    Priority,
    ReviewDecision,
    StreamKind,
    WebhookEvent,
)

# Status-hash field: the request's callback_url (what RECORD's and the review's Lua check).
CALLBACK_URL_FIELD = "callback_url"

# Fields of the status hash that hold JSON rather than plain text.
JSON_FIELDS = ("progress", "output", "refusal", "error", "review", "webhooks")


class Refusal(BaseModel):
    """Why PREFLIGHT refused a job: a RefusalCode value and a sentence for humans."""

    code: str
    reason: str


class JobError(BaseModel):
    """Why a job failed or was cancelled: an error type (e.g. `llm_unavailable`) and a message."""

    type: str
    message: str


class Review(BaseModel):
    """A human's decision on an escalated plan."""

    decision: ReviewDecision
    by: str  # the authenticated reviewer's id
    note: str = ""
    at: str


class WebhookAttempt(BaseModel):
    """One delivery attempt of one of the job's webhook events (never its body or secret)."""

    delivery_id: str
    endpoint_id: str
    event: WebhookEvent
    attempt: int
    status: int | None = None  # the receiver's status code; None when it did not answer
    latency_ms: int
    outcome: AttemptOutcome
    error: str = ""  # timeout, connect, refused_address, redirect_not_followed, not_allowed, ...
    at: str


class JobStatus(BaseModel):
    """What a submitter polls: the job's state, phase, attempt, heartbeat, progress and outcome."""

    job_id: str
    state: JobState
    phase: Phase | None = None
    attempt: int = 0
    heartbeat_at: str | None = None
    agent_id: str
    tenant_id: str
    submitted_at: str
    not_before: str | None = None  # a delayed job starts no earlier
    priority: Priority | None = None
    started_at: str | None = None
    finished_at: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    output: AgentOutput | None = None
    refusal: Refusal | None = None
    error: JobError | None = None
    review: Review | None = None
    cancel_requested: bool = False  # a running job asked to stop: it does at its next heartbeat
    webhooks: list[WebhookAttempt] = Field(default_factory=list)  # the latest delivery attempts

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def handoff(self) -> dict[str, Any]:
        """This job's plan as a later job's read-only context (`handoff_from`)."""
        assert self.output is not None
        return {
            "job_id": self.job_id,
            "agent_id": self.agent_id,
            "output": self.output.model_dump(mode="json"),
        }

    def linked(self) -> LinkedJob:
        """What policy needs of this job when another request names it (handoff, retry)."""
        return LinkedJob(
            self.job_id,
            self.tenant_id,
            self.state,
            self.output is not None,
            self.review.decision if self.review else None,
        )

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[str, str]) -> JobStatus:
        """Build the status object from the job's status hash (decoded strings)."""
        data: dict[str, Any] = {"job_id": job_id}
        for name in cls.model_fields:
            if name == "job_id" or name not in raw:
                continue
            value: Any = raw[name]
            if name in JSON_FIELDS:
                value = codec.loads(value) if value else None
            elif name == "phase" and value == "":
                value = None
            if value is not None:
                data[name] = value
        for name in ("progress", "webhooks"):
            if data.get(name) is None:
                data.pop(name, None)
        return cls.model_validate(data)


class JobEvent(BaseModel):
    """One entry of a job's event stream: a phase change, progress, or the terminal state."""

    kind: StreamKind
    state: JobState
    phase: Phase | None = None
    attempt: int = 0
    tokens: int = 0
    at: str

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> JobEvent:
        return cls.model_validate({k: (v or None) if k == "phase" else v for k, v in raw.items()})
