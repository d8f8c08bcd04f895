"""The job function: PREFLIGHT -> PLAN -> VALIDATE -> RECORD, read in one place.

Each phase is a method below; `run` calls them in order and maps every way a job can end
to exactly one terminal record. A worker never crashes on a bad job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from governance.models import AgentOutput, AgentRecord, PlanRequest
from governance.policy import Refuse, Verdict, preflight, review_output
from governance.registry import AgentRegistry
from governance.vocabulary import CancelReason, JobState, Phase, RefusalCode
from worker import __version__
from worker.client import describe_validation_error
from worker.clock import now_iso
from worker.errors import LLMError
from worker.ledger_events import WORKER_NAME, ledger_event
from worker.llm_stream import LLMPlanner, LLMResult
from worker.settings import Settings
from worker.status_store import Beat, StatusStore

logger = structlog.get_logger(__name__)


class Refused(Exception):
    """PREFLIGHT refused the job."""

    def __init__(self, refusal: Refuse) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class Cancelled(Exception):
    """The submitter asked to cancel while the job ran."""


class Fenced(Exception):
    """Another attempt holds the job now (or it is terminal): this attempt must not write."""


class JobTimedOut(Exception):
    """The job ran past JOB_TIMEOUT_S."""


@dataclass(slots=True)
class JobRun:
    """One attempt at one job: its id, fencing token and who it is for."""

    job_id: str
    attempt: int
    agent_id: str
    tenant_id: str
    log: Any
    tokens: int = 0


class Pipeline:
    """Runs planning jobs. One per worker process, shared by its concurrent jobs."""

    def __init__(self, settings: Settings, status: StatusStore, registry: AgentRegistry, planner: LLMPlanner):
        self.settings = settings
        self.status = status
        self.registry = registry
        self.planner = planner

    async def run(self, job_id: str, raw_request: Any) -> str:
        """Run one attempt of a job to its terminal record; returns the state it ended in."""
        job = await self._claim(job_id, raw_request)
        if job is None:
            return "skipped"
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                request, agent = await self.preflight(job, raw_request)
                result = await self.plan(job, agent, request)
                output = await self.validate(job, agent, request, result)
            return await self.record_done(job, output, result)
        except Refused as exc:
            return await self.record_end(job, JobState.REFUSED, refusal=exc.refusal)
        except LLMError as exc:
            return await self.record_end(job, JobState.FAILED, error=(exc.code, str(exc)))
        except Cancelled:
            reason = CancelReason.BY_SUBMITTER.value
            return await self.record_end(job, JobState.CANCELLED, error=(reason, "cancelled while running"))
        except TimeoutError:
            message = f"job ran past JOB_TIMEOUT_S={self.settings.job_timeout_s:g}s"
            return await self.record_end(job, JobState.FAILED, error=("job_timeout", message))
        except Fenced:
            job.log.warning("attempt fenced out; another attempt holds the job")
            return "fenced"
        except Exception as exc:  # the boundary: a bad job must end as a record, never crash the worker
            job.log.exception("job failed unexpectedly")
            return await self.record_end(
                job, JobState.FAILED, error=("internal_error", f"{type(exc).__name__}: {exc}")
            )

    async def _claim(self, job_id: str, raw_request: Any) -> JobRun | None:
        claim = await self.status.start(job_id)
        raw = raw_request if isinstance(raw_request, dict) else {}
        agent_id, tenant_id = str(raw.get("agent_id", "?")), str(raw.get("tenant_id", "default"))
        log = logger.bind(job_id=job_id, agent_id=agent_id, tenant_id=tenant_id, attempt=claim.attempt)
        if claim.attempt is None:
            log.info("nothing to run", state=claim.state)
            return None
        log.info("job started", phase=Phase.PREFLIGHT.value)
        return JobRun(job_id, claim.attempt, agent_id, tenant_id, log)

    async def preflight(self, job: JobRun, raw_request: Any) -> tuple[PlanRequest, AgentRecord]:
        """PREFLIGHT: the request is well formed and governance allows it."""
        try:
            request = PlanRequest.model_validate(raw_request)
        except ValidationError as exc:
            raise Refused(Refuse(RefusalCode.BAD_REQUEST, describe_validation_error(exc))) from exc
        agent = await self.registry.get(request.agent_id)
        verdict = preflight(agent, request, model_allowed=self.settings.model_allowed(request.model))
        if isinstance(verdict, Refuse):
            raise Refused(verdict)
        assert agent is not None  # preflight refuses unknown agents
        return request, agent

    async def plan(self, job: JobRun, agent: AgentRecord, request: PlanRequest) -> LLMResult:
        """PLAN: stream the LLM call, heartbeating with the token count; stop at once on cancel."""
        await self._beat(job, Phase.PLAN)

        def on_tokens(count: int) -> None:
            job.tokens = count

        model = request.model or self.settings.model
        call = asyncio.create_task(
            self.planner.plan(agent=agent, request=request, model=model, on_tokens=on_tokens)
        )
        try:
            interval = self.settings.heartbeat_s
            next_beat = time.monotonic() + interval
            while True:
                done, _ = await asyncio.wait({call}, timeout=max(0.0, next_beat - time.monotonic()))
                if done:
                    return call.result()
                next_beat += interval
                await self._beat(job, Phase.PLAN, kind="progress")
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)

    async def validate(
        self, job: JobRun, agent: AgentRecord, request: PlanRequest, result: LLMResult
    ) -> AgentOutput:
        """VALIDATE: apply the agent's governance to the parsed plan."""
        await self._beat(job, Phase.VALIDATE)
        verdict: Verdict = review_output(agent, result.draft)
        draft = result.draft
        notes = "\n".join(n for n in (draft.notes_for_humans, *verdict.notes) if n)
        return AgentOutput(
            **draft.model_dump(exclude={"decision", "notes_for_humans"}),
            decision=verdict.decision,
            notes_for_humans=notes,
            agent_id=agent.agent_id,
            version=__version__,
            timestamp=now_iso(),
            metadata={
                "job_id": job.job_id,
                "attempt": job.attempt,
                "model_requested": request.model or self.settings.model,
                "model": result.model,
                "response_mode": result.response_mode,
                "llm_attempts": result.attempts,
                "usage": result.usage,
                "flags": list(verdict.flags),
                "llm_decision": draft.decision.value,
            },
        )

    async def record_done(self, job: JobRun, output: AgentOutput, result: LLMResult) -> str:
        """RECORD a plan: terminal status, result and ledger event in one transaction."""
        output_json = output.model_dump(mode="json")
        event = self._event(
            job,
            JobState.DONE,
            decision=output.decision.value,
            model=result.model,
            payload={"output": output_json, "usage": result.usage},
        )
        fields = {"output": output_json, "progress": {"tokens": job.tokens}}
        return await self._record(job, JobState.DONE, event, fields)

    async def record_end(
        self,
        job: JobRun,
        state: JobState,
        *,
        refusal: Refuse | None = None,
        error: tuple[str, str] | None = None,
    ) -> str:
        """RECORD a refusal, a failure or a cancellation."""
        if refusal is not None:
            detail = {"code": refusal.code.value, "reason": refusal.reason}
            event = self._event(job, state, reason=refusal.code.value, payload={"refusal": detail})
            fields = {"refusal": detail}
        else:
            assert error is not None
            detail = {"type": error[0], "message": error[1]}
            event = self._event(job, state, reason=error[0], payload={"error": detail})
            fields = {"error": detail, "progress": {"tokens": job.tokens}}
        return await self._record(job, state, event, fields)

    async def _record(
        self, job: JobRun, state: JobState, event: dict[str, Any], fields: dict[str, Any]
    ) -> str:
        if not await self.status.record(job.job_id, job.attempt, state, event, fields):
            job.log.warning("terminal record refused: job already terminal or held by another attempt")
            return "fenced"
        job.log.info("job finished", state=state.value, phase=Phase.RECORD.value, reason=event["reason"])
        return state.value

    def _event(self, job: JobRun, state: JobState, **fields: Any) -> dict[str, Any]:
        return ledger_event(
            state.value,
            job_id=job.job_id,
            agent_id=job.agent_id,
            tenant_id=job.tenant_id,
            attempt=job.attempt,
            worker=WORKER_NAME,
            **fields,
        )

    async def _beat(self, job: JobRun, phase: Phase, *, kind: str = "phase") -> None:
        beat = await self.status.heartbeat(job.job_id, job.attempt, phase, tokens=job.tokens, kind=kind)
        if beat is Beat.CANCEL:
            raise Cancelled()
        if beat is Beat.FENCED:
            raise Fenced()
        if kind == "phase":
            job.log.debug("phase", phase=phase.value)
