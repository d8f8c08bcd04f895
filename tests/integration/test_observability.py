"""Metrics a worker serves and the trace of a job, from a real run against Redis and the stub."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from plangate_base.vocabulary import JobState
from tests.conftest import free_port
from tests.integration.workers import running_worker
from worker.client import PlanClient
from worker.metrics import serve_metrics
from worker.settings import Settings

pytestmark = pytest.mark.integration

EXPORTER = InMemorySpanExporter()
JOB = {"agent_id": "llm-planner-001", "description": "Plan the metrics run"}
RETRY_CAUSES = ("transient", "llm_rate_limited", "llm_unavailable", "llm_stream_error", "llm_timeout")


@pytest.fixture(scope="module", autouse=True)
def _tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process; the in-memory exporter collects


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


async def _scrape_when_up(port: int) -> str:
    """The first scrape, once the worker has started its metrics server (poll with a deadline)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            return await asyncio.to_thread(_scrape, port)
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, "the worker never served /metrics"
            await asyncio.sleep(0.05)


def _value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found = re.search(r"\{(.*)\}", series)
            have = ",".join(sorted(found.group(1).split(","))) if found else ""
            if series.split("{")[0] == name and have == want:
                return float(value)
    return 0.0


async def test_a_worker_serves_its_metrics(settings: Settings) -> None:
    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port, "metrics_host": "127.0.0.1"})
    async with running_worker(settings), PlanClient.connect(settings) as client:
        before = await _scrape_when_up(port)
        done = await client.wait(await client.submit({"agent_id": "llm-planner-001", "description": "x"}), 20)
        refused = await client.wait(await client.submit({"agent_id": "nobody", "description": "x"}), 20)
        retried = await client.wait(await client.submit({**JOB, "model": "scripted-429"}), 20)
        failed = await client.wait(await client.submit({**JOB, "model": "scripted-500"}), 20)
        after = await asyncio.to_thread(_scrape, port)
    assert retried.state is JobState.DONE and failed.state is JobState.FAILED
    assert done.state is JobState.DONE and refused.state is JobState.REFUSED

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("plangate_jobs_finished_total", state="done", decision="EXECUTE") == 2
    assert delta("plangate_jobs_finished_total", state="failed", decision="") == 1
    assert delta("plangate_job_failures_total", cause="llm_unavailable") == 1
    assert sum(delta("plangate_llm_retries_total", cause=c) for c in RETRY_CAUSES) >= 1
    assert delta("plangate_preflight_refusals_total", reason="unknown_agent") == 1
    assert delta("plangate_phase_duration_seconds_count", phase="PLAN") == 3
    assert delta("plangate_llm_time_to_first_token_seconds_count", model="scripted") == 1
    assert delta("plangate_llm_tokens_per_second_count", model="scripted") == 1
    assert delta("plangate_llm_tokens_total", kind="completion", model="scripted") > 0
    assert delta("plangate_queue_wait_seconds_count") == 4
    for name in (
        "plangate_queue_depth",
        "plangate_jobs_running",
        "plangate_ledger_pending",
        "plangate_ledger_stream_length",
        "plangate_oldest_heartbeat_age_seconds",
        "plangate_llm_tokens_per_second_count",
        "plangate_llm_retries_total",
        "plangate_job_failures_total",
    ):
        assert re.search(rf"^(# TYPE )?{name}", after, re.M), name
    assert _value(after, "plangate_jobs_submitted_total") >= 2  # read from Redis: all producers'
    assert _value(after, "plangate_jobs_running") == 0
    assert done.job_id not in after and not re.search(r'="[0-9a-f]{32}"', after)  # no job ids as labels


def test_metrics_bind_loopback_by_default_and_say_where(settings: Settings) -> None:
    port = free_port()
    settings = settings.with_changes(metrics_port=port)  # and the default host
    with capture_logs() as started:
        server = serve_metrics(settings)
    assert server is not None
    try:
        assert {"event": "serving /metrics", "host": "127.0.0.1", "port": port, "log_level": "info"} in (
            started
        )
        assert "plangate_jobs_started_total" in _scrape(port)
        with capture_logs() as skipped:  # the address is taken (here by the first server)
            assert serve_metrics(settings) is None
        [warning] = skipped
        assert warning["log_level"] == "warning" and (warning["host"], warning["port"]) == ("127.0.0.1", port)
    finally:
        server.close()
    with socket.create_server(("127.0.0.1", port)):  # closing freed the port for a restarted worker
        pass


async def test_a_job_is_one_trace_from_submit_to_the_llm_call(settings: Settings) -> None:
    settings = settings.model_copy(update={"tracing": True})
    EXPORTER.clear()
    async with running_worker(settings), PlanClient.connect(settings) as client:
        ok = await client.wait(await client.submit({"agent_id": "llm-planner-001", "description": "x"}), 20)
        failed = await client.wait(
            await client.submit({"agent_id": "llm-planner-001", "description": "y", "model": "scripted-500"}),
            20,
        )
    assert ok.state is JobState.DONE and failed.state is JobState.FAILED
    spans = EXPORTER.get_finished_spans()
    by_trace: dict[int, list] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = [t for t in by_trace.values() if any(s.name == "submit" for s in t)]
    assert len(traces) == 2
    for spans_of_job in traces:
        names = {s.name for s in spans_of_job}
        assert {"submit", "plan job", "PREFLIGHT", "PLAN", "RECORD"} <= names
        kinds = {s.name: s.kind for s in spans_of_job}
        assert kinds["submit"] is SpanKind.PRODUCER and kinds["plan job"] is SpanKind.CONSUMER
    llm = [s for s in spans if s.name.startswith("chat ")]
    good = next(s for s in llm if s.name == "chat scripted")
    assert good.kind is SpanKind.CLIENT
    assert good.attributes["gen_ai.operation.name"] == "chat"
    assert good.attributes["gen_ai.provider.name"] == "openai"
    assert good.attributes["gen_ai.request.model"] == "scripted"
    assert good.attributes["gen_ai.response.model"] == "scripted"
    assert (
        good.attributes["gen_ai.usage.output_tokens"] > 0 and good.attributes["gen_ai.usage.input_tokens"] > 0
    )
    bad = next(s for s in llm if s.name == "chat scripted-500")
    assert bad.attributes["error.type"] == "llm_unavailable"
