"""JobObserver alone: the process metrics an attempt moves, phase by phase and by the way it ends."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY
from structlog.contextvars import bound_contextvars, get_contextvars

from plangate_base.vocabulary import JobState, Phase, RefusalCode
from worker.job_observer import JobObserver
from worker.settings import Settings

SETTINGS = Settings(llm_base_url="http://127.0.0.1:9/v1")


def _meter() -> Callable[..., float]:
    """How much a sample has moved since this call."""
    before = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
    }

    def moved(name: str, **labels: str) -> float:
        now = REGISTRY.get_sample_value(name, labels) or 0.0
        return now - before.get((name, tuple(sorted(labels.items()))), 0.0)

    return moved


def test_a_refused_attempt_counts_its_start_its_phases_and_its_refusal() -> None:
    moved = _meter()
    with bound_contextvars(phase=Phase.PREFLIGHT.value):
        observer = JobObserver.job_started(SETTINGS, "j1", 1, enqueued_at=0.0)
        assert moved("plangate_jobs_running") == 1
        observer.phase_started(Phase.RECORD)
        assert get_contextvars()["phase"] == "RECORD"  # the job's lines say where it is
        observer.job_recorded(JobState.REFUSED, True, decision=None, reason=RefusalCode.LOCKED.value)
        observer.job_ended()
    assert moved("plangate_jobs_started_total") == 1 and moved("plangate_queue_wait_seconds_count") == 1
    assert moved("plangate_phase_duration_seconds_count", phase="PREFLIGHT") == 1
    assert moved("plangate_phase_duration_seconds_count", phase="RECORD") == 1
    assert moved("plangate_jobs_finished_total", state="refused", decision="") == 1
    assert moved("plangate_preflight_refusals_total", reason="locked") == 1
    assert moved("plangate_jobs_running") == 0


def test_a_fenced_write_is_timed_but_not_counted_as_an_end() -> None:
    moved = _meter()
    with bound_contextvars(phase=Phase.PREFLIGHT.value):
        observer = JobObserver.job_started(SETTINGS, "j2", 2, enqueued_at=0.0)  # a retry: no queue wait
        observer.phase_started(Phase.RECORD)
        observer.job_recorded(JobState.FAILED, False, decision=None, reason="job_timeout")
        observer.job_ended()
    assert moved("plangate_queue_wait_seconds_count") == 0
    assert moved("plangate_phase_duration_seconds_count", phase="RECORD") == 1
    assert moved("plangate_jobs_finished_total", state="failed", decision="") == 0
    assert moved("plangate_job_failures_total", cause="job_timeout") == 0
    assert "phase" not in get_contextvars()  # bound for the job only
