"""How a job ended, built in one place: the terminal record's status-hash fields and its ledger event.

Every way a job ends -- RECORD of a plan, a refusal, a failure or a cancellation in the pipeline, a
cancel while queued in the client, a job the watchdog cannot finish -- makes one `Outcome` and lets it
say what the status hash holds (`status_fields`) and what the ledger event carries (`event_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governance.models import AgentOutput
from governance.policy import Refuse
from plangate_base.vocabulary import CancelReason, Decision, EventKind, FailureCode, JobState


@dataclass(frozen=True, slots=True)
class Outcome:
    """A terminal state and what it carries: the plan (done), the refusal code and why (refused), or the
    typed error (failed, cancelled); the LLM call's usage when one was made; the token count so far."""

    state: JobState
    reason_code: str | None = None  # a RefusalCode, FailureCode or CancelReason value (None: done)
    message: str = ""  # the refusal's reason or the error's message
    output: AgentOutput | None = None  # done only
    model: str | None = None  # the model that answered (done only)
    usage: dict[str, Any] | None = None  # the LLM call's usage (estimated when the call did not finish)
    tokens: int | None = None  # the job's progress in tokens (None: no progress field is written)

    @classmethod
    def done(cls, output: AgentOutput, *, model: str, usage: dict[str, Any], tokens: int) -> Outcome:
        """A plan: the governed AgentOutput, whatever its decision."""
        return cls(JobState.DONE, output=output, model=model, usage=usage, tokens=tokens)

    @classmethod
    def refused(cls, refusal: Refuse) -> Outcome:
        """A PREFLIGHT refusal (no LLM call was made)."""
        return cls(JobState.REFUSED, refusal.code.value, refusal.reason)

    @classmethod
    def error(
        cls,
        state: JobState,
        code: FailureCode | CancelReason | str,
        message: str,
        *,
        usage: dict[str, Any] | None = None,
        tokens: int | None = None,
    ) -> Outcome:
        """A typed error: `failed` (the LLM call, the pipeline, or a job no attempt can finish; a
        FailureCode) or `cancelled` (by its submitter, or its agent revoked; a CancelReason)."""
        if state not in (JobState.FAILED, JobState.CANCELLED):
            raise ValueError(f"an error ends a job failed or cancelled, not {state.value}")
        return cls(state, str(code), message, usage=usage, tokens=tokens)

    @property
    def kind(self) -> EventKind:
        """The ledger event kind of this end: spelled like its state."""
        return EventKind(self.state.value)

    @property
    def decision(self) -> Decision | None:
        """The plan's decision (done only)."""
        return self.output.decision if self.output is not None else None

    @property
    def flags(self) -> list[str]:
        """The governance flags VALIDATE put on the plan."""
        return list(self.output.metadata.get("flags") or []) if self.output is not None else []

    @property
    def needs_review(self) -> bool:
        """Whether the plan waits for a human (it ended ESCALATE)."""
        return self.decision is Decision.ESCALATE

    def payload(self) -> dict[str, Any]:
        """The ledger event's payload: the AgentOutput, its usage and flags; the refusal; or the error
        (with the usage when the LLM call had begun)."""
        if self.output is not None:
            return {"output": self.output.model_dump(mode="json"), "usage": self.usage, "flags": self.flags}
        if self.state is JobState.REFUSED:
            return {"refusal": {"code": self.reason_code, "reason": self.message}}
        error = {"error": {"type": self.reason_code, "message": self.message}}
        return error if self.usage is None else {**error, "usage": self.usage}

    def event_fields(self) -> dict[str, Any]:
        """What the terminal ledger event says besides who and when: decision, reason, model, payload."""
        if self.output is not None:
            return {
                "decision": self.output.decision.value,
                "reason": ",".join(self.flags) or None,
                "model": self.model,
                "payload": self.payload(),
            }
        return {"reason": self.reason_code, "payload": self.payload()}

    def status_fields(self) -> dict[str, Any]:
        """The fields the terminal write sets on the job's status hash (besides state, phase and times)."""
        payload = self.payload()
        if self.output is not None:
            fields: dict[str, Any] = {"output": payload["output"], "decision": self.output.decision.value}
        elif self.state is JobState.REFUSED:
            fields = {"refusal": payload["refusal"], "reason_code": self.reason_code}
        else:
            fields = {"error": payload["error"], "reason_code": self.reason_code}
        if self.tokens is not None:
            fields["progress"] = {"tokens": self.tokens}
        return fields
