"""One attempt at one job: who it is (`JobContext`), what it holds and owes (`Held`), and the ways it can
stop short (`Refused`, `Stopped`, `Fenced`).

The phases hand their results on as return values (PREFLIGHT's `Admitted`, PLAN's `LLMResult`,
VALIDATE's `AgentOutput`); only what every way out of the attempt must settle is shared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from governance.policy import Refuse
from plangate_base.vocabulary import CancelReason, EventKind
from worker.ledger_events import WORKER_NAME, ledger_event
from worker.status_store import JobRef, Spend


class Refused(Exception):
    """PREFLIGHT refused the job."""

    def __init__(self, refusal: Refuse) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class Expired(Exception):
    """The job's deadline passed before it started: it ends failed (deadline_exceeded), unplanned."""


class Stopped(Exception):
    """The job must stop while running: cancelled by its submitter, or its agent revoked."""

    def __init__(self, reason: CancelReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Fenced(Exception):
    """Another attempt holds the job now (or it is terminal): this attempt must not write."""


@dataclass(slots=True)
class Held:
    """What the attempt has taken and spent so far, written as it happens and settled by RECORD however the
    attempt ends: a refusal after admission still releases its quota reservation, a failure mid-stream
    still counts the tokens streamed."""

    quota_day: str = ""  # the UTC day the quota reservation counts against (none yet: "")
    prompt_estimate: int = 0  # the reservation's estimate of the prompt's tokens
    locks: tuple[str, ...] = ()
    llm_started: bool = False
    tokens: int = 0  # completion tokens streamed so far (what heartbeats report)

    @property
    def spend(self) -> Spend:
        """What the attempt spent when it ends without the stream's usage: estimated."""
        if not self.llm_started:
            return Spend()
        return Spend(self.prompt_estimate, self.tokens, estimated=True)


@dataclass(frozen=True, slots=True)
class JobContext:
    """One attempt at one job: its id, fencing token (`attempt`), tries so far and who it is for."""

    job_id: str
    attempt: int
    agent_id: str
    tenant_id: str
    tries: int = 1
    held: Held = field(default_factory=Held)

    @property
    def ref(self) -> JobRef:
        """What the lifecycle scripts need to know about the job: its owner, locks and quota day."""
        held = self.held
        return JobRef(self.job_id, self.agent_id, held.locks, self.tenant_id, held.quota_day)

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
