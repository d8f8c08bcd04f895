"""How one attempt at a job looks from outside: its Prometheus numbers (worker/metrics.py), its trace
spans (worker/tracing.py) and the phase its log lines carry.

The pipeline tells a `JobObserver` where the job is at a few points (started, a phase entered, the LLM
call's start, tokens and end, the terminal write, the end); the observer does the measuring, so that
worker/pipeline.py reads as the four phases.
"""

from __future__ import annotations

import time
from typing import Any

from structlog.contextvars import bind_contextvars

from plangate_base.vocabulary import JobState, Phase
from worker import metrics, tracing
from worker.llm.planner import LLMResult
from worker.settings import Settings


class JobObserver:
    """The metrics, spans and log phase of one attempt, from its claim to its end (`job_ended`)."""

    def __init__(self, settings: Settings, job_id: str, *, trace_parent: Any = None) -> None:
        self._settings = settings
        self._phase = Phase.PREFLIGHT
        self._phase_started = time.monotonic()
        self._llm_started = 0.0
        self._first_token_at: float | None = None
        self._span: Any = None  # the job's trace span, when tracing
        self._phase_span: Any = None
        self._llm_span: Any = None
        if tracing.enabled(settings.tracing):
            parent = tracing.extract(trace_parent)
            self._span = tracing.start_span("plan job", "consumer", parent, {"plangate.job_id": job_id})
            self._phase_span = tracing.start_span(Phase.PREFLIGHT.value, parent=self._span)

    @classmethod
    def job_started(
        cls,
        settings: Settings,
        job_id: str,
        attempt: int,
        *,
        enqueued_at: float | None = None,
        trace_parent: Any = None,
    ) -> JobObserver:
        """An attempt began (in PREFLIGHT): count it, and time the first one's wait in the queue."""
        metrics.JOBS_STARTED.inc()
        metrics.RUNNING.inc()
        if enqueued_at is not None and attempt == 1:
            metrics.QUEUE_WAIT.observe(max(0.0, time.time() - enqueued_at))
        return cls(settings, job_id, trace_parent=trace_parent)

    def phase_started(self, phase: Phase) -> None:
        """The job entered `phase`: time the phase it left, open a span for this one, log under it."""
        now = time.monotonic()
        metrics.PHASE_SECONDS.labels(self._phase.value).observe(now - self._phase_started)
        self._phase, self._phase_started = phase, now
        bind_contextvars(phase=phase.value)
        if self._span is not None:
            tracing.end_span(self._phase_span)
            self._phase_span = tracing.start_span(phase.value, parent=self._span)

    def llm_call_started(self, model: str) -> None:
        """PLAN asks `model` for the plan: a CLIENT span named after the GenAI conventions."""
        self._llm_started = time.monotonic()
        if self._span is None:
            return
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": tracing.provider_name(self._settings.llm_base_url),
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": self._settings.max_tokens,
        }
        self._llm_span = tracing.start_span(
            f"chat {model}", "client", self._phase_span or self._span, attributes
        )

    def tokens_streamed(self) -> None:
        """More of the answer arrived (the first time: the time to first token)."""
        if self._first_token_at is None:
            self._first_token_at = time.monotonic()

    def llm_call_failed(self, code: str) -> None:
        """The LLM call ended in a typed failure `code`."""
        tracing.end_span(self._llm_span, error_type=code)
        self._llm_span = None

    def llm_call_ended(self, result: LLMResult) -> None:
        """The call's numbers: time to first token, tokens per second, tokens by kind and model, retries."""
        usage = result.usage
        if self._first_token_at is not None:
            metrics.TTFT.labels(result.model).observe(self._first_token_at - self._llm_started)
            streaming = time.monotonic() - self._first_token_at
            if streaming > 0:
                metrics.TOKENS_PER_SECOND.labels(result.model).observe(usage.completion_tokens / streaming)
        metrics.TOKENS.labels("prompt", result.model).inc(usage.prompt_tokens)
        metrics.TOKENS.labels("completion", result.model).inc(usage.completion_tokens)
        if result.attempts > 1:
            metrics.LLM_RETRIES.labels("transient").inc(result.attempts - 1)
        tracing.end_span(
            self._llm_span,
            attributes={
                "gen_ai.response.model": result.model,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
            },
        )
        self._llm_span = None

    def job_recorded(
        self, state: JobState, recorded: bool, *, decision: str | None, reason: str | None
    ) -> None:
        """RECORD's write returned: time it; when it landed, count the end by state and cause."""
        metrics.PHASE_SECONDS.labels(Phase.RECORD.value).observe(time.monotonic() - self._phase_started)
        if not recorded:
            return
        metrics.JOBS_FINISHED.labels(state.value, decision or "").inc()
        if state is JobState.REFUSED:
            metrics.REFUSALS.labels(reason).inc()
        elif state is JobState.FAILED:
            metrics.FAILURES.labels(reason).inc()

    def job_ended(self) -> None:
        """The attempt is over, however it ended: close what is still open."""
        metrics.RUNNING.dec()
        tracing.end_span(self._llm_span)  # a call cut short (cancel, timeout) ends with its job
        tracing.end_span(self._phase_span)
        tracing.end_span(self._span)
