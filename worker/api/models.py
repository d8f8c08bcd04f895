"""The API's own request and response models. A submission is a PlanRequest without what the token
decides (agent and tenant may be left out; the agent key never appears in a body): its fields are taken
from PlanRequest, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from governance.models import PlanRequest
from worker.api.problems import Problem
from worker.job_models import JobStatus

MAX_BATCH = 100  # requests in one POST /v1/jobs/batch
MAX_WAIT_S = 60.0
MAX_PAGE = 200  # jobs in one GET /v1/jobs page  # the longest GET /v1/jobs/{id}?wait=S


def _submission_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in PlanRequest.model_fields.items():
        if name == "agent_key":
            continue  # identity travels in the Authorization header only
        if name in ("agent_id", "tenant_id"):
            fields[name] = (
                info.annotation | None,
                Field(default=None, description=f"default: the token's {name}"),
            )
        else:
            fields[name] = (info.annotation, info)
    return fields


JobSubmission: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "JobSubmission",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A planning job as an agent submits it over HTTP (PlanRequest's fields; see docs/api.md).",
    **_submission_fields(),
)


class BatchSubmission(BaseModel):
    """Up to MAX_BATCH submissions; each may carry its own idempotency_key."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmission] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class BatchItem(BaseModel):
    """One submission's result: the job's status (202) or the problem that refused it."""

    index: int
    status: int
    job: JobStatus | None = None
    problem: Problem | None = None


class BatchResult(BaseModel):
    """One result per submitted item, in order."""

    results: list[BatchItem]


class JobList(BaseModel):
    """One page of the caller's jobs, newest first; pass `next_cursor` as `cursor` for the next."""

    jobs: list[JobStatus]
    next_cursor: str | None = None


class LedgerRecord(BaseModel):
    """A job's ledger events in order (the same as `plangate ledger show JOB_ID --json`)."""

    job_id: str
    events: list[dict[str, Any]]


class ReviewNote(BaseModel):
    """A reviewer's reason for approving or rejecting an escalated plan."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class Reason(BaseModel):
    """Why an operator changes an agent's state (recorded in the ledger)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class IssuedKey(BaseModel):
    """A newly issued key: shown once, stored only hashed."""

    agent_id: str
    key: str


class LockHeld(BaseModel):
    """A resource lock and the job holding it (until `ttl_ms` from now, unless renewed)."""

    resource: str
    job_id: str
    ttl_ms: int


class LoginLink(BaseModel):
    """A one-time sign-in link of the live view (a path on this API)."""

    url: str
    expires_in_s: int


class Health(BaseModel):
    """Process health (/healthz) and readiness (/readyz)."""

    status: str
    redis: bool | None = None
    workers: int | None = None
    detail: str = ""
