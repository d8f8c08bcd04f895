"""The job function: PREFLIGHT -> PLAN -> VALIDATE -> RECORD, read in one place.

Each phase is a method below; `run` calls them in order and maps every way a job can end
to exactly one terminal record. A worker never crashes on a bad job.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from redis.asyncio import Redis

from governance.models import (
    IDENTIFIER_PATTERN,
    AgentOutput,
    AgentRecord,
    PlanDraft,
    PlanRequest,
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
from worker import __version__, metrics, tracing
from worker.errors import LLMError
from worker.ids import new_id
from worker.job_run import Fenced, JobRun, Refused, Stopped
from worker.keys import Keys
from worker.llm.planner import LLMPlanner, LLMResult
from worker.llm.usage import Usage
from worker.outcome import Outcome
from worker.preflight import PreflightPhase, lock_ttl_ms
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
        self.tracing = tracing.enabled(settings.tracing)

    async def run(self, job_id: str, raw_request: Any, *, enqueued_at: float | None = None) -> str:
        """Run one attempt of a job to its terminal record; returns the state it ended in."""
        trace_parent = raw_request.pop(TRACE_FIELD, None) if isinstance(raw_request, dict) else None
        job = await self._claim(job_id, raw_request)
        if job is None:
            return "skipped"
        metrics.JOBS_STARTED.inc()
        metrics.RUNNING.inc()
        if enqueued_at is not None and job.attempt == 1:
            metrics.QUEUE_WAIT.observe(max(0.0, time.time() - enqueued_at))
        if self.tracing:
            job.span = tracing.start_span(
                "plan job", "consumer", tracing.extract(trace_parent), {"plangate.job_id": job_id}
            )
            job.phase_span = tracing.start_span(Phase.PREFLIGHT.value, parent=job.span)
        try:
            return await self._run(job, raw_request)
        finally:
            metrics.RUNNING.dec()
            tracing.end_span(job.phase_span)
            tracing.end_span(job.span)

    async def _run(self, job: JobRun, raw_request: Any) -> str:
        try:
            if job.tries > self.settings.job_tries:
                message = f"the job was tried {job.tries - 1} times (JOB_TRIES={self.settings.job_tries})"
                return await self.record_end(
                    job, JobState.FAILED, error=(FailureCode.TRIES_EXHAUSTED, message)
                )
            async with asyncio.timeout(self.settings.job_timeout_s):
                request, agent = await self.preflight_phase.check(job, raw_request)
                result = await self.plan(job, agent, request)
                output = await self.validate(job, agent, request, result)
            return await self.record_done(job, output, result)
        except Refused as exc:
            return await self.record_end(job, JobState.REFUSED, refusal=exc.refusal)
        except LLMError as exc:
            return await self.record_end(job, JobState.FAILED, error=(exc.code, str(exc)))
        except Stopped as exc:
            message = (
                "agent revoked while running"
                if exc.reason is CancelReason.REVOKED
                else "cancelled while running"
            )
            return await self.record_end(job, JobState.CANCELLED, error=(exc.reason.value, message))
        except TimeoutError:
            message = f"job ran past JOB_TIMEOUT_S={self.settings.job_timeout_s:g}s"
            return await self.record_end(job, JobState.FAILED, error=(FailureCode.JOB_TIMEOUT, message))
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
            job.log.exception("job failed unexpectedly", incident=incident)
            # The record names the error's type and the incident only: an exception's text may quote
            # data (another record, a key hash) that the submitter must not see. The log has it all.
            message = f"{type(exc).__name__} inside the worker (incident {incident}, in the worker's log)"
            return await self.record_end(job, JobState.FAILED, error=(FailureCode.INTERNAL_ERROR, message))

    async def _claim(self, job_id: str, raw_request: Any) -> JobRun | None:
        raw = raw_request if isinstance(raw_request, dict) else {}
        # Ids that are not identifiers never reach a key name (they could name another record's key);
        # PREFLIGHT refuses such a request as bad_request.
        agent_id, tenant_id = str(raw.get("agent_id", "?")), str(raw.get("tenant_id", "default"))
        agent_id = agent_id if _IDENTIFIER.match(agent_id) else "?"
        tenant_id = tenant_id if _IDENTIFIER.match(tenant_id) else "?"
        claim = await self.status.start(
            job_id, agent_id if agent_id != "?" else None, stale_after_s=self.settings.stale_after_s
        )
        log = logger.bind(job_id=job_id, agent_id=agent_id, tenant_id=tenant_id, attempt=claim.attempt)
        if claim.attempt is None:
            log.info("nothing to run", state=claim.state)
            return None
        log.info("job started", phase=Phase.PREFLIGHT.value)
        return JobRun(job_id, claim.attempt, agent_id, tenant_id, log, tries=claim.tries)

    async def _hand_back(self, job: JobRun) -> None:
        event = job.event(
            EventKind.HANDED_BACK, reason=RequeueReason.SHUTDOWN, payload={"tokens": job.tokens}
        )
        outcome = await self.status.requeue(job.job_id, job.attempt, event)
        job.log.info("job handed back to the queue", outcome=outcome)

    async def plan(self, job: JobRun, agent: AgentRecord, request: PlanRequest) -> LLMResult:
        """PLAN: stream the LLM call, heartbeating with the token count; stop at once on cancel."""
        await self._beat(job, Phase.PLAN)

        def on_tokens(count: int) -> None:
            if job.first_token_at is None:
                job.first_token_at = time.monotonic()
            job.tokens = count

        model = request.model or self.settings.model
        job.llm_started = True
        started = time.monotonic()
        llm_span = self._llm_span(job, model)
        call = asyncio.create_task(
            self.planner.plan(
                agent=agent, request=request, model=model, on_tokens=on_tokens, messages=job.messages
            )
        )
        try:
            interval = self.settings.heartbeat_s
            next_beat = time.monotonic() + interval
            while True:
                done, _ = await asyncio.wait({call}, timeout=max(0.0, next_beat - time.monotonic()))
                if done:
                    result = self._observe_llm(job, model, started, call, llm_span)
                    return result
                next_beat += interval
                await self._beat(job, Phase.PLAN, kind=StreamKind.PROGRESS)
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)

    async def validate(
        self, job: JobRun, agent: AgentRecord, request: PlanRequest, result: LLMResult
    ) -> AgentOutput:
        """VALIDATE: apply the agent's governance to the parsed plan."""
        await self._beat(job, Phase.VALIDATE)
        draft = result.draft
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

    async def record_done(self, job: JobRun, output: AgentOutput, result: LLMResult) -> str:
        """RECORD a plan: terminal status, result and ledger event in one transaction."""
        usage = result.usage
        outcome = Outcome.done(output, model=result.model, usage=usage.as_dict(), tokens=job.tokens)
        spend = Spend(usage.prompt_tokens, usage.completion_tokens, usage.estimated)
        return await self._record(job, outcome, spend=spend)

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
            outcome = Outcome.refused(refusal)
        else:
            assert error is not None
            spent = job.spend
            usage = Usage(spent.prompt_tokens, spent.completion_tokens, estimated=True)
            code, message = error
            outcome = Outcome.error(
                state, code, message, usage=usage.as_dict() if job.llm_started else None, tokens=job.tokens
            )
        charge = None
        if job.agent is not None and counts_against_budget(state, outcome.reason_code if error else None):
            suspension = job.event(
                EventKind.SUSPENDED,
                reason=RefusalCode.ERROR_BUDGET_EXHAUSTED.value,
                payload={"limit": job.agent.error_budget_limit, "window_s": job.agent.error_budget_window_s},
            )
            charge = BudgetCharge(
                job.agent.error_budget_window_s * 1000, job.agent.error_budget_limit, suspension
            )
        return await self._record(job, outcome, charge=charge, spend=job.spend)

    async def _record(
        self,
        job: JobRun,
        outcome: Outcome,
        *,
        charge: BudgetCharge | None = None,
        spend: Spend = Spend(),  # noqa: B008  (frozen)
    ) -> str:
        self._enter(job, Phase.RECORD)
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
        metrics.PHASE_SECONDS.labels(Phase.RECORD.value).observe(time.monotonic() - job.phase_started)
        if recorded:
            metrics.JOBS_FINISHED.labels(state.value, event.get("decision") or "").inc()
            if state is JobState.REFUSED:
                metrics.REFUSALS.labels(event["reason"]).inc()
            elif state is JobState.FAILED:
                metrics.FAILURES.labels(event["reason"]).inc()
        if not recorded:
            return await self._fenced(job)
        job.log.info("job finished", state=state.value, phase=Phase.RECORD.value, reason=event["reason"])
        return state.value

    async def _fenced(self, job: JobRun) -> str:
        """This attempt lost the job: it ended, another attempt holds it, or a watchdog took it back
        to the queue (this worker looked dead). In that last case the queue must keep the job for its next
        run, so tell it to run the job again instead of finishing (and deleting) it."""
        state = (await self.status.fields(job.job_id, "state"))["state"]
        job.log.warning("attempt fenced out", state=state)
        if state == JobState.QUEUED.value:
            raise RunAgain()
        return "fenced"

    async def _ledger(self, kind: EventKind, job: JobRun, **fields: Any) -> None:
        """A ledger event outside the terminal write (e.g. a lock wait)."""
        await self.redis.xadd(
            self.keys.ledger_stream(), {LEDGER_STREAM_FIELD: codec.dumps(job.event(kind, **fields))}
        )

    def _enter(self, job: JobRun, phase: Phase) -> None:
        """Close the timing (and span) of the phase the job leaves, open the next one."""
        now = time.monotonic()
        metrics.PHASE_SECONDS.labels(job.phase.value).observe(now - job.phase_started)
        job.phase, job.phase_started = phase, now
        job.log = job.log.bind(phase=phase.value)
        if job.span is not None:
            tracing.end_span(job.phase_span)
            job.phase_span = tracing.start_span(phase.value, parent=job.span)

    def _llm_span(self, job: JobRun, model: str) -> Any:
        if job.span is None:
            return None
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": tracing.provider_name(self.settings.llm_base_url),
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": self.settings.max_tokens,
        }
        return tracing.start_span(f"chat {model}", "client", job.phase_span or job.span, attributes)

    def _observe_llm(self, job: JobRun, model: str, started: float, call: Any, span: Any) -> LLMResult:
        """The LLM call's numbers: time to first token, tokens per second, tokens by kind and model."""
        try:
            result: LLMResult = call.result()
        except LLMError as exc:
            tracing.end_span(span, error_type=exc.code)
            raise
        usage = result.usage
        if job.first_token_at is not None:
            metrics.TTFT.labels(result.model).observe(job.first_token_at - started)
            streaming = time.monotonic() - job.first_token_at
            if streaming > 0:
                metrics.TOKENS_PER_SECOND.labels(result.model).observe(usage.completion_tokens / streaming)
        metrics.TOKENS.labels("prompt", result.model).inc(usage.prompt_tokens)
        metrics.TOKENS.labels("completion", result.model).inc(usage.completion_tokens)
        if result.attempts > 1:
            metrics.LLM_RETRIES.labels("transient").inc(result.attempts - 1)
        tracing.end_span(
            span,
            attributes={
                "gen_ai.response.model": result.model,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
            },
        )
        return result

    async def _beat(self, job: JobRun, phase: Phase, *, kind: StreamKind = StreamKind.PHASE) -> None:
        if kind is StreamKind.PHASE:
            self._enter(job, phase)
        beat = await self.status.heartbeat(
            job.ref, job.attempt, phase, tokens=job.tokens, kind=kind, lock_ttl_ms=self.lock_ttl_ms
        )
        if beat is Beat.OK:
            return
        if beat is Beat.CANCEL:
            raise Stopped(CancelReason.BY_SUBMITTER)
        if beat is Beat.REVOKED:
            raise Stopped(CancelReason.REVOKED)
        raise Fenced()
