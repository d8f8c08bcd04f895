"""Prometheus metrics of a worker process, served on PLANGATE_METRICS_HOST:PLANGATE_METRICS_PORT (0 = off).

Process-local counters and histograms are updated by the pipeline; the queue-wide gauges (queue
depth, deferred jobs, oldest heartbeat, ledger lag) are refreshed from Redis by the watchdog. Label
values are bounded: states, phases, decisions, reason codes and model names, never job ids.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from plangate_base import clock
from plangate_base.logs import get_logger
from worker.fair_queue import FairQueue
from worker.keys import LEDGER_GROUP, Keys
from worker.queue_backend import job_queue
from worker.queue_counts import add_queue_reads, queue_counts_of
from worker.settings import Settings

if TYPE_CHECKING:
    from ledger.ledger_writer import LedgerWriter

log = get_logger(__name__)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

JOBS_FINISHED = Counter(
    "plangate_jobs_finished_total", "Jobs that reached a terminal state", ["state", "decision"]
)
JOBS_STARTED = Counter("plangate_jobs_started_total", "Attempts started by this worker")
REFUSALS = Counter("plangate_preflight_refusals_total", "Jobs refused at PREFLIGHT", ["reason"])
FAILURES = Counter("plangate_job_failures_total", "Jobs that ended failed", ["cause"])
PHASE_SECONDS = Histogram(
    "plangate_phase_duration_seconds", "Time spent in each phase", ["phase"], buckets=_SECONDS
)
QUEUE_WAIT = Histogram("plangate_queue_wait_seconds", "Submit to PREFLIGHT start", buckets=_SECONDS)
TTFT = Histogram(
    "plangate_llm_time_to_first_token_seconds", "LLM time to first token", ["model"], buckets=_SECONDS
)
TOKENS_PER_SECOND = Histogram(
    "plangate_llm_tokens_per_second",
    "Completion tokens per second of a streamed answer",
    ["model"],
    buckets=(1, 5, 10, 25, 50, 100, 200, 400, 800, 1600),
)
TOKENS = Counter("plangate_llm_tokens_total", "LLM tokens by kind and model", ["kind", "model"])
LLM_RETRIES = Counter("plangate_llm_retries_total", "LLM calls retried, by cause", ["cause"])
WEBHOOK_ATTEMPTS = Counter(
    "plangate_webhook_attempts_total",
    "Webhook delivery attempts by event type, outcome and status class (2xx, 4xx, 5xx, none)",
    ["event", "outcome", "status"],
)
WEBHOOK_SECONDS = Histogram(
    "plangate_webhook_attempt_seconds", "Time one webhook attempt took", ["outcome"], buckets=_SECONDS
)
WEBHOOK_LAG = Histogram(
    "plangate_webhook_delivery_lag_seconds",
    "From the event (outbox entry) to its delivery's first attempt",
    buckets=_SECONDS,
)
RUNNING = Gauge("plangate_jobs_running", "Jobs this worker is running now")
QUEUE_DEPTH = Gauge("plangate_queue_depth", "Jobs waiting for a worker (due now, not running)")
QUEUE_DEFERRED = Gauge(
    "plangate_queue_deferred", "Jobs in the queue deferred to a later time (retries), not due yet"
)
OLDEST_HEARTBEAT_AGE = Gauge(
    "plangate_oldest_heartbeat_age_seconds", "Heartbeat age of the oldest running job"
)
TENANT_QUEUED = Gauge(
    "plangate_tenant_queued", "A tenant's jobs ready to start (due, not paused)", ["tenant"]
)
TENANT_RUNNING = Gauge("plangate_tenant_running", "A tenant's running jobs (admitted)", ["tenant"])
TENANT_OLDEST_QUEUED_AGE = Gauge(
    "plangate_tenant_oldest_queued_age_seconds", "How long a tenant's oldest next job has waited", ["tenant"]
)
TENANT_START_SHARE = Gauge(
    "plangate_tenant_start_share", "A tenant's share of job starts over this and the last minute", ["tenant"]
)
LEDGER_STREAM_LENGTH = Gauge("plangate_ledger_stream_length", "Entries on the ledger stream not yet deleted")
LEDGER_PENDING = Gauge(
    "plangate_ledger_pending", "Ledger entries delivered to a writer and not yet committed"
)


class _QueueCounters:
    """Counters kept in Redis for the whole queue (producers are other processes), as read last."""

    def __init__(self) -> None:
        self.submitted = 0.0

    def collect(self) -> list[CounterMetricFamily]:
        return [
            CounterMetricFamily(
                "plangate_jobs_submitted",
                "Jobs submitted to this queue by all producers",
                value=self.submitted,
            )
        ]


QUEUE_COUNTERS = _QueueCounters()
REGISTRY.register(QUEUE_COUNTERS)  # type: ignore[arg-type]


class _LedgerWriterState:
    """The ledger writer of this process, as read at scrape time: diverged (it stopped writing because the
    file's head is not the head it wrote) and heads it refused to sign. Alert on diverged == 1."""

    def __init__(self) -> None:
        self.writer: LedgerWriter | None = None

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        writer = self.writer
        diverged = 1.0 if writer is not None and writer.diverged is not None else 0.0
        refused = float(writer.anchorer.refused) if writer is not None and writer.anchorer else 0.0
        return [
            GaugeMetricFamily(
                "plangate_ledger_diverged",
                "1 when the ledger writer stopped: the file's head is not the head it wrote",
                value=diverged,
            ),
            CounterMetricFamily(
                "plangate_ledger_heads_refused",
                "Chain heads the ledger writer refused to sign",
                value=refused,
            ),
            self._sink_failures(),
        ]

    def _sink_failures(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "plangate_ledger_checkpoint_publish_failures",
            "Tries to publish a signed checkpoint that failed, by sink (file, webhook); the writer went on",
            labels=["sink"],
        )
        anchorer = self.writer.anchorer if self.writer is not None else None
        if anchorer is not None:
            for sink in anchorer.sinks:
                family.add_metric([sink.name], float(anchorer.sink_failures[sink.name]))
        return family


LEDGER_WRITER_STATE = _LedgerWriterState()
REGISTRY.register(LEDGER_WRITER_STATE)  # type: ignore[arg-type]


def watch_ledger_writer(writer: LedgerWriter) -> None:
    """Report this writer's state on /metrics."""
    LEDGER_WRITER_STATE.writer = writer


class MetricsServer:
    """A worker's /metrics HTTP server; `close()` stops its thread and frees the port for a restart."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(settings: Settings) -> MetricsServer | None:
    """Serve /metrics on PLANGATE_METRICS_HOST:PLANGATE_METRICS_PORT in a background thread; None when off
    or when the address is taken (another worker on this host): the worker runs on without it."""
    host, port = settings.metrics_host, settings.metrics_port
    if not port:
        return None
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics.unavailable", host=host, port=port, error=str(exc))
        return None
    log.info("metrics.serving", host=host, port=port)
    return MetricsServer(server, thread, host, port)


TENANT_GAUGES_EVERY_S = 10.0
"""How often a worker's watchdog refreshes the per-tenant gauges (each refresh reads every tenant's sets)."""


async def _refresh_tenant_gauges(redis: Redis, settings: Settings, keys: Keys) -> None:
    fair = FairQueue(redis, keys, job_queue(settings.queue_name), aging_s=settings.priority_aging_s)
    for tenant_id, row in (await fair.tenants_view(clock.now_ms())).items():
        TENANT_QUEUED.labels(tenant_id).set(row["queued"])
        TENANT_RUNNING.labels(tenant_id).set(row["running"])
        TENANT_OLDEST_QUEUED_AGE.labels(tenant_id).set(row["oldest_queued_age_s"] or 0.0)
        TENANT_START_SHARE.labels(tenant_id).set(row["share_of_starts"])


async def refresh_queue_gauges(redis: Redis, settings: Settings, *, tenants: bool = True) -> None:
    """Read the queue-wide numbers from Redis (a few cheap reads; called by the watchdog), and with
    `tenants` the per-tenant ones (reads per tenant: the watchdog asks every TENANT_GAUGES_EVERY_S)."""
    keys = Keys(settings.key_prefix)
    async with redis.pipeline(transaction=False) as pipe:
        add_queue_reads(pipe, settings, clock.now_ms())
        pipe.zrange(keys.running(), 0, 0, withscores=True)
        pipe.xlen(keys.ledger_stream())
        pipe.get(keys.stats_submitted())
        *counts, oldest, length, submitted = await pipe.execute()
    queue = queue_counts_of(*counts)
    QUEUE_COUNTERS.submitted = float(submitted or 0)
    QUEUE_DEPTH.set(queue.waiting)
    QUEUE_DEFERRED.set(queue.deferred)
    OLDEST_HEARTBEAT_AGE.set(max(0.0, (clock.now_ms() - oldest[0][1]) / 1000) if oldest else 0.0)
    LEDGER_STREAM_LENGTH.set(length)
    if tenants:
        await _refresh_tenant_gauges(redis, settings, keys)
    try:
        pending = await redis.xpending(keys.ledger_stream(), LEDGER_GROUP)
        LEDGER_PENDING.set(int(pending["pending"]))
    except ResponseError:  # no group yet
        LEDGER_PENDING.set(0)
