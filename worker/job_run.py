"""One attempt at one job, and the ways it can stop short: the data every phase shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from governance.models import AgentRecord
from governance.policy import Refuse
from plangate_base.vocabulary import CancelReason, EventKind, Phase
from worker.ledger_events import WORKER_NAME, ledger_event
from worker.status_store import JobRef, Spend


class Refused(Exception):
    """PREFLIGHT refused the job."""

    def __init__(self, refusal: Refuse) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class Stopped(Exception):
    """The job must stop while running: cancelled by its submitter, or its agent revoked."""

    def __init__(self, reason: CancelReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Fenced(Exception):
    """Another attempt holds the job now (or it is terminal): this attempt must not write."""


@dataclass(slots=True)
class JobRun:
    """One attempt at one job: its id, fencing token, who it is for and the locks it holds."""

    job_id: str
    attempt: int
    agent_id: str
    tenant_id: str
    log: Any
    tokens: int = 0
    tries: int = 1
    locks: tuple[str, ...] = ()
    quota_day: str = ""
    prompt_estimate: int = 0
    messages: list[dict[str, Any]] | None = None  # the planning call's messages, built at PREFLIGHT
    llm_started: bool = False
    phase: Phase = Phase.PREFLIGHT
    phase_started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    span: Any = None  # the job's trace span, when tracing
    phase_span: Any = None
    agent: AgentRecord | None = field(default=None)

    @property
    def ref(self) -> JobRef:
        return JobRef(self.job_id, self.agent_id, self.locks, self.tenant_id, self.quota_day)

    def event(self, kind: EventKind, **fields: Any) -> dict[str, Any]:
        """A ledger event of this attempt: who, what, when, where."""
        return ledger_event(
            kind,
            job_id=self.job_id,
            agent_id=self.agent_id,
            tenant_id=self.tenant_id,
            attempt=self.attempt,
            worker=WORKER_NAME,
            **fields,
        )

    @property
    def spend(self) -> Spend:
        """What this attempt spent when it ends without the stream's usage: estimated."""
        if not self.llm_started:
            return Spend()
        return Spend(self.prompt_estimate, self.tokens, estimated=True)
