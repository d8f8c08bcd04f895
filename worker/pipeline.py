"""The job function: PREFLIGHT -> PLAN -> VALIDATE -> RECORD, read in one place.

Each phase is a method below that returns what the next one needs (PREFLIGHT's `Admitted`, PLAN's
`LLMResult`, VALIDATE's `AgentOutput`); `run` calls them in order and maps every way a job can end
to exactly one terminal record. A worker never crashes on a bad job. Metrics and spans are the
`JobObserver`'s (worker/job_observer.py); every log line of a job carries its job, agent, tenant and
phase as structlog context variables, bound here.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from redis.asyncio import Redis
from structlog.contextvars import bound_contextvars

from governance.models import (
    IDENTIFIER_PATTERN,
    AgentOutput,
    AgentRecord,
    PlanDraft,
)
from governance.policy import Refuse, Verdict, counts_against_budget, has_unknown_names, review_output
from governance.registry import AgentRegistry, CapabilityVocabulary
from plangate_base import codec
from plangate_base.clock import now_iso
from plangate_base.logs import get_logger
from plangate_base.vocabulary import (
    LEDGER_STREAM_FIELD,
    NOW_MS,
    CancelReason,
    EventKind,
    FailureCode,
    JobState,
    Phase,
    RefusalCode,
    RequeueReason,
    StreamKind,
)
from worker import __version__
from worker.errors import LLMError
from worker.ids import new_id
from worker.job_observer import JobObserver
from worker.job_run import Expired, Fenced, JobContext, Refused, Stopped
from worker.keys import Keys
from worker.llm.planner import LLMPlanner, LLMResult
from worker.llm.usage import Usage
from worker.outcome import Outcome
from worker.preflight import Admitted, PreflightPhase, lock_ttl_ms
from worker.queue_backend import RunAgain
from worker.settings import Settings
from worker.status_store import Beat, BudgetCharge, Spend, StatusStore
from worker.tracing import TRACE_FIELD

logger = get_logger(__name__)

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


def governed_output(
    agent: AgentRecord, draft: PlanDraft, verdict: Verdict, metadata: dict[str, Any]
) -> AgentOutput:
    """The Foundation Document VALIDATE builds: the LLM's draft with the governed decision, the verdict's
    notes after the LLM's own, stamped with the agent, plangate's version and the time."""
    notes = "\n".join(n for n in (draft.notes_for_humans, *verdict.notes) if n)
    return AgentOutput(
        **draft.model_dump(exclude={"decision", "notes_for_humans"}),
        decision=verdict.decision,
        notes_for_humans=notes,
        agent_id=agent.agent_id,
        version=__version__,
        timestamp=now_iso(),
        metadata=metadata,
    )


class Pipeline:
    """Runs planning jobs. One per worker process, shared by its concurrent jobs."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        status: StatusStore,
        registry: AgentRegistry,
        planner: LLMPlanner,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.status = status
        self.registry = registry
        self.preflight_phase = PreflightPhase(settings, redis, registry, status, self._ledger)
        self.vocabulary = CapabilityVocabulary(redis, self.keys)
        self.planner = planner
        self.lock_ttl_ms = lock_ttl_ms(settings)

    async def run(self, job_id: str, raw_request: Any, *, enqueued_at: float | None = None) -> str:
        """Run one attempt of a job to its terminal record; returns the state it ended in.

        Every log line of the attempt, the LLM module's too, carries its job_id, agent_id, tenant_id,
        attempt and phase (structlog context variables: each job runs in its own task, so its own copy)."""
        trace_parent = raw_request.pop(TRACE_FIELD, None) if isinstance(raw_request, dict) else None
        agent_id, tenant_id = _owner_of(raw_request)
        with bound_contextvars(job_id=job_id, agent_id=agent_id, tenant_id=tenant_id):
            job = await self._claim(job_id, agent_id, tenant_id)
            if job is None:
                return "skipped"
            observer = JobObserver.job_started(
                self.settings, job_id, job.attempt, enqueued_at=enqueued_at, trace_parent=trace_parent
            )
            with bound_contextvars(attempt=job.attempt, phase=Phase.PREFLIGHT.value):
                logger.info("job.started")
                try:
                    return await self._run(job, observer, raw_request)
                finally:
                    observer.job_ended()

    async def _run(self, job: JobContext, observer: JobObserver, raw_request: Any) -> str:
        admitted: Admitted | None = None
        try:
            if job.tries > self.settings.job_tries:
                message = f"the job was tried {job.tries - 1} times (JOB_TRIES={self.settings.job_tries})"
                return await self.record_end(
                    job, observer, JobState.FAILED, error=(FailureCode.TRIES_EXHAUSTED, message)
                )
            async with asyncio.timeout(self.settings.job_timeout_s):
                admitted = await self.preflight_phase.check(job, raw_request)
                result = await self.plan(job, observer, admitted)
                output = await self.validate(job, observer, admitted, result)
            return await self.record_done(job, observer, output, result)
        except Refused as exc:
            return await self.record_end(job, observer, JobState.REFUSED, refusal=exc.refusal)
        except Expired as exc:
            error = (FailureCode.DEADLINE_EXCEEDED, str(exc))
            return await self.record_end(job, observer, JobState.FAILED, error=error)
        except LLMError as exc:
            return await self.record_end(job, observer, JobState.FAILED, admitted, error=(exc.code, str(exc)))
        except Stopped as exc:
            message = (
                "agent revoked while running"
                if exc.reason is CancelReason.REVOKED
                else "cancelled while running"
            )
            return await self.record_end(
                job, observer, JobState.CANCELLED, admitted, error=(exc.reason.value, message)
            )
        except TimeoutError:
            message = f"job ran past JOB_TIMEOUT_S={self.settings.job_timeout_s:g}s"
            return await self.record_end(
                job, observer, JobState.FAILED, admitted, error=(FailureCode.JOB_TIMEOUT, message)
            )
        except Fenced:
            return await self._fenced(job)
        except RunAgain:
            raise  # fenced out by a takeover: the queue keeps the job for its next run
        except asyncio.CancelledError:
            # The worker is shutting down: give the job back to the queue (its try is not spent).
            await asyncio.shield(self._hand_back(job))
            raise
        except Exception as exc:  # the boundary: a bad job must end as a record, never crash the worker
            incident = new_id()
            logger.exception("job.failed_unexpectedly", incident=incident)
            # The record names the error's type and the incident only: an exception's text may quote
            # data (another record, a key hash) that the submitter must not see. The log has it all.
            message = f"{type(exc).__name__} inside the worker (incident {incident}, in the worker's log)"
            return await self.record_end(
                job, observer, JobState.FAILED, admitted, error=(FailureCode.INTERNAL_ERROR, message)
            )

    async def _claim(self, job_id: str, agent_id: str, tenant_id: str) -> JobContext | None:
        claim = await self.status.start(
            job_id, agent_id if agent_id != "?" else None, stale_after_s=self.settings.stale_after_s
        )
        if claim.attempt is None:
            logger.info("job.skipped", state=claim.state)  # nothing to run
            return None
        return JobContext(job_id, claim.attempt, agent_id, tenant_id, tries=claim.tries)

    async def _hand_back(self, job: JobContext) -> None:
        event = job.event(
            EventKind.HANDED_BACK, reason=RequeueReason.SHUTDOWN, payload={"tokens": job.held.tokens}
        )
        outcome = await self.status.requeue(job.job_id, job.attempt, event)
        logger.info("job.handed_back", outcome=outcome)

    async def plan(self, job: JobContext, observer: JobObserver, admitted: Admitted) -> LLMResult:
        """PLAN: stream the LLM call, heartbeating with the token count; stop at once on cancel."""
        await self._beat(job, observer, Phase.PLAN)

        def on_tokens(count: int) -> None:
            job.held.tokens = count
            observer.tokens_streamed()

        request = admitted.request
        model = request.model or self.settings.model
        job.held.llm_started = True
        observer.llm_call_started(model)
        call = asyncio.create_task(
            self.planner.plan(
                agent=admitted.agent,
                request=request,
                model=model,
                on_tokens=on_tokens,
                messages=admitted.messages,
            )
        )
        try:
            interval = self.settings.heartbeat_s
            next_beat = time.monotonic() + interval
            while True:
                done, _ = await asyncio.wait({call}, timeout=max(0.0, next_beat - time.monotonic()))
                if done:
                    try:
                        result = call.result()
                    except LLMError as exc:
                        observer.llm_call_failed(exc.code)
                        raise
                    observer.llm_call_ended(result)
                    return result
                next_beat += interval
                await self._beat(job, observer, Phase.PLAN, kind=StreamKind.PROGRESS)
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)

    async def validate(
        self, job: JobContext, observer: JobObserver, admitted: Admitted, result: LLMResult
    ) -> AgentOutput:
        """VALIDATE: apply the agent's governance to the parsed plan."""
        await self._beat(job, observer, Phase.VALIDATE)
        agent, request, draft = admitted.agent, admitted.request, result.draft
        verdict: Verdict = review_output(agent, draft)
        if has_unknown_names(verdict):  # words beyond the seed's: operators may have added them
            verdict = review_output(agent, draft, await self.vocabulary.known())
        return governed_output(
            agent,
            draft,
            verdict,
            {
                "job_id": job.job_id,
                "attempt": job.attempt,
                "model_requested": request.model or self.settings.model,
                "model": result.model,
                "response_mode": result.response_mode,
                "llm_attempts": result.attempts,
                "usage": result.usage.as_dict(),
                "flags": list(verdict.flags),
                "llm_decision": draft.decision.value,
                "handoff_from": request.handoff_from,
            },
        )

    async def record_done(
        self, job: JobContext, observer: JobObserver, output: AgentOutput, result: LLMResult
    ) -> str:
        """RECORD a plan: terminal status, result and ledger event in one transaction."""
        usage = result.usage
        outcome = Outcome.done(output, model=result.model, usage=usage.as_dict(), tokens=job.held.tokens)
        spend = Spend(usage.prompt_tokens, usage.completion_tokens, usage.estimated)
        return await self._record(job, observer, outcome, spend=spend)

    async def record_end(
        self,
        job: JobContext,
        observer: JobObserver,
        state: JobState,
        admitted: Admitted | None = None,
        *,
        refusal: Refuse | None = None,
        error: tuple[str, str] | None = None,
    ) -> str:
        """RECORD a refusal, a failure or a cancellation (`admitted`: what PREFLIGHT let through, if any)."""
        held = job.held
        if refusal is not None:
            outcome = Outcome.refused(refusal)
        else:
            assert error is not None
            spent = held.spend
            usage = Usage(spent.prompt_tokens, spent.completion_tokens, estimated=True)
            code, message = error
            outcome = Outcome.error(
                state, code, message, usage=usage.as_dict() if held.llm_started else None, tokens=held.tokens
            )
        charge = None
        agent = admitted.agent if admitted is not None else None
        if agent is not None and counts_against_budget(state, outcome.reason_code if error else None):
            suspension = job.event(
                EventKind.SUSPENDED,
                reason=RefusalCode.ERROR_BUDGET_EXHAUSTED.value,
                payload={"limit": agent.error_budget_limit, "window_s": agent.error_budget_window_s},
            )
            charge = BudgetCharge(agent.error_budget_window_s * 1000, agent.error_budget_limit, suspension)
        return await self._record(job, observer, outcome, charge=charge, spend=held.spend)

    async def _record(
        self,
        job: JobContext,
        observer: JobObserver,
        outcome: Outcome,
        *,
        charge: BudgetCharge | None = None,
        spend: Spend = Spend(),  # noqa: B008  (frozen)
    ) -> str:
        observer.phase_started(Phase.RECORD)
        state = outcome.state
        event = job.event(outcome.kind, **outcome.event_fields())
        event["payload"] = {**event["payload"], "settled_at_ms": NOW_MS}  # stamped by the server
        recorded = await self.status.record(
            job.ref,
            job.attempt,
            state,
            event,
            outcome.status_fields(),
            charge=charge,
            needs_review=outcome.needs_review,
            spend=spend,
        )
        observer.job_recorded(state, recorded, decision=event.get("decision"), reason=event["reason"])
        if not recorded:
            return await self._fenced(job)
        logger.info("job.finished", state=state.value, reason=event["reason"])
        return state.value

    async def _fenced(self, job: JobContext) -> str:
        """This attempt lost the job: it ended, another attempt holds it, or a watchdog took it back
        to the queue (this worker looked dead). In that last case the queue must keep the job for its next
        run, so tell it to run the job again instead of finishing (and deleting) it."""
        state = (await self.status.fields(job.job_id, "state"))["state"]
        logger.warning("job.fenced", state=state)
        if state == JobState.QUEUED.value:
            raise RunAgain()
        return "fenced"

    async def _ledger(self, kind: EventKind, job: JobContext, **fields: Any) -> None:
        """A ledger event outside the terminal write (e.g. a lock wait)."""
        await self.redis.xadd(
            self.keys.ledger_stream(), {LEDGER_STREAM_FIELD: codec.dumps(job.event(kind, **fields))}
        )

    async def _beat(
        self,
        job: JobContext,
        observer: JobObserver,
        phase: Phase,
        *,
        kind: StreamKind = StreamKind.PHASE,
    ) -> None:
        if kind is StreamKind.PHASE:
            observer.phase_started(phase)
        beat = await self.status.heartbeat(
            job.ref, job.attempt, phase, tokens=job.held.tokens, kind=kind, lock_ttl_ms=self.lock_ttl_ms
        )
        if beat is Beat.OK:
            return
        if beat is Beat.CANCEL:
            raise Stopped(CancelReason.BY_SUBMITTER)
        if beat is Beat.REVOKED:
            raise Stopped(CancelReason.REVOKED)
        raise Fenced()


def _owner_of(raw_request: Any) -> tuple[str, str]:
    """The agent and tenant a job payload names, as far as they can name a key ("?" otherwise): ids that
    are not identifiers never reach a key name (they could name another record's key); PREFLIGHT refuses
    such a request as bad_request."""
    raw = raw_request if isinstance(raw_request, dict) else {}
    agent_id, tenant_id = str(raw.get("agent_id", "?")), str(raw.get("tenant_id", "default"))
    agent_id = agent_id if _IDENTIFIER.match(agent_id) else "?"
    tenant_id = tenant_id if _IDENTIFIER.match(tenant_id) else "?"
    return agent_id, tenant_id
