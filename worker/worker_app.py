"""The worker: one settings object in, a configured queue worker out (worker.queue_backend.arq_worker).

The ledger writer runs inside the worker process by default; `ledger_writer=False` leaves it
to a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from governance.registry import AgentRegistry, load_agents_file
from ledger.anchors import Anchorer, CheckpointSink, FileSink
from ledger.ledger_writer import LedgerWriter
from ledger.signing import load_or_create_key
from ledger.sqlite_store import LedgerStore
from ledger.writer_lock import WriterLock
from plangate_base.logs import get_logger
from plangate_base.vocabulary import FailureCode
from worker.admin import AgentAdmin
from worker.fair_queue import FairPicker, FairQueue
from worker.keys import LEDGER_GROUP, Keys
from worker.ledger_events import WORKER_NAME
from worker.llm.planner import LLMPlanner
from worker.metrics import serve_metrics, watch_ledger_writer
from worker.pipeline import Pipeline
from worker.queue_backend import PICKER, QueueWorker, job_queue
from worker.queue_backend.arq_worker import QueuePool, WakeableWorker, build_arq_worker
from worker.reconcile import record_lost
from worker.redis_conn import text_client
from worker.settings import Settings
from worker.status_store import StatusStore
from worker.watchdog import Watchdog
from worker.webhooks.checkpoint_sink import WebhookCheckpointSink
from worker.webhooks.deliverer_thread import DelivererThread

log = get_logger(__name__)


async def run_plan_job(ctx: dict[str, Any], job_id: str, request: Any, enqueued_at: float | None) -> str:
    """The job function: hand the job to this process's pipeline."""
    pipeline: Pipeline = ctx["pipeline"]
    return await pipeline.run(job_id, request, enqueued_at=enqueued_at)


LEDGER_LOCK_TTL_S = 5.0
"""How long a dead active ledger writer keeps standbys waiting before one takes over."""


def policy_version() -> str:
    """The policy in force, stamped on every ledger row: the governance code is plangate's, so its version."""
    try:
        return f"plangate-{importlib.metadata.version('plangate')}"
    except importlib.metadata.PackageNotFoundError:
        return "plangate-unknown"


async def start_ledger_writer(
    redis: Redis, settings: Settings, *, lock_ttl_s: float = LEDGER_LOCK_TTL_S
) -> tuple[LedgerWriter, asyncio.Task[None]]:
    """Open (and migrate) the ledger file and start the writer: active if it wins the writer lock, else
    standby until the active one dies; the active writer signs the chain head every anchor interval."""
    keys = Keys(settings.key_prefix)
    store = await LedgerStore.open(settings.ledger_path, policy_version=policy_version())
    try:
        signing_key = await asyncio.to_thread(open_signing_key, settings)
    except BaseException:
        await store.close()
        raise
    writer = LedgerWriter(
        redis,
        keys.ledger_stream(),
        LEDGER_GROUP,
        WORKER_NAME,
        store,
        batch_size=settings.ledger_batch_size,
        batch_delay_s=settings.ledger_batch_delay_s,
        lock=WriterLock(redis, keys.ledger_writer_lock(), WORKER_NAME, ttl_s=lock_ttl_s),
        anchorer=Anchorer(
            store,
            signing_key,
            redis,
            keys.ledger_anchor(),
            interval_s=settings.ledger_anchor_interval_s,
            origin=settings.ledger_origin,
            checkpoint_key=keys.ledger_checkpoint(),
            sinks=checkpoint_sinks(redis, settings),
        ),
        claim_idle_s=settings.ledger_claim_idle_s,
        head_key=keys.ledger_head(),
        reconciler=_reconciler(redis, settings) if settings.ledger_reconcile_interval_s > 0 else None,
        reconcile_interval_s=settings.ledger_reconcile_interval_s,
    )
    watch_ledger_writer(writer)
    return writer, asyncio.create_task(writer.run(), name="ledger-writer")


def checkpoint_sinks(redis: Redis, settings: Settings) -> list[CheckpointSink]:
    """Where the writer publishes each checkpoint off the machine: the sink file when one is configured,
    and the webhook outbox (delivered to the deployment's `ledger.checkpoint` endpoints, if any)."""
    sinks: list[CheckpointSink] = []
    if settings.ledger_checkpoint_sink is not None:
        sinks.append(FileSink(settings.ledger_checkpoint_sink))
    sinks.append(WebhookCheckpointSink(redis, Keys(settings.key_prefix)))
    return sinks


def _reconciler(redis: Redis, settings: Settings) -> Callable[[], Awaitable[int]]:
    """The writer's periodic reconciliation: record the jobs lost with Redis's data; how many."""

    async def reconcile() -> int:
        return len(await record_lost(redis, settings))

    return reconcile


def open_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The ledger signing key (created if absent), with a loud warning when it is generated because none is
    configured, or when it sits beside the ledger file (whoever can write the file could then sign)."""
    path = settings.signing_key_path()
    if settings.ledger_signing_key is None and not path.exists():
        log.warning(
            "ledger.signing_key_generated",
            key=str(path),
            hint="no PLANGATE_LEDGER_SIGNING_KEY: a new key was generated here; set it to a key kept apart "
            "from the ledger, and give auditors its public key (KEY.pub)",
        )
    if path.resolve().parent == settings.ledger_path.resolve().parent:
        log.warning(
            "ledger.signing_key_beside_ledger",
            key=str(path),
            hint="the key that signs the ledger is in the ledger's directory: keep it apart",
        )
    return load_or_create_key(path)


STOP_TIMEOUT_S = 2.0
"""How long, beyond its own wait, a task that talks to Redis gets to stop at shutdown: when it needs longer
Redis is gone (its retries would take tens of seconds), so it is cancelled."""


async def stop_ledger_writer(writer: LedgerWriter, task: asyncio.Task[None]) -> None:
    """Stop the writer after its current batch (signing the final head, releasing the writer lock) and
    close the ledger file, whatever happened before: a writer that cannot finish (Redis gone) is cancelled;
    what it had read but not acknowledged stays pending for the next writer."""
    writer.stop()
    try:
        await stop_task(task, writer.block_ms / 1000 + STOP_TIMEOUT_S)
    finally:
        await writer.store.close()


async def stop_task(task: asyncio.Task[None], timeout_s: float) -> None:
    """Wait up to `timeout_s` for a task asked to stop, then cancel it; its error, if any, is raised."""
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("task.stop_timed_out", task=task.get_name(), timeout_s=timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return
    task.result()


async def load_agents(redis: Redis, settings: Settings) -> None:
    """Apply the agents file: its vocabulary words, then its agents, each change recorded in the
    ledger (a record that is already stored as it is records nothing)."""
    assert settings.agents_file is not None
    source = f"agents file {settings.agents_file}"
    declared = load_agents_file(settings.agents_file)
    admin = AgentAdmin(redis, Keys(settings.key_prefix))
    if declared.vocabulary:
        await admin.add_vocabulary(declared.vocabulary, by=WORKER_NAME, reason=source, source=source)
    for record in declared.agents:
        await admin.save_agent(record, by=WORKER_NAME, source=source)


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    ledger_writer: bool = True,
    handle_signals: bool = True,
    redis_factory: Callable[[], tuple[QueuePool, Redis]] | None = None,
) -> WakeableWorker:
    """A queue worker running the planning pipeline with these settings.

    `redis_factory` returns (queue pool, text client); by default both connect to REDIS_URL.
    The embedded demo passes one backed by an in-process server.
    """
    keys = Keys(settings.key_prefix)
    ctx: dict[str, Any] = {}
    queue_pool = text_redis = None
    if redis_factory is not None:
        queue_pool, text_redis = redis_factory()

    async def on_startup(ctx: dict[str, Any]) -> None:
        # Each resource is pushed as soon as it is open, so on_shutdown closes exactly those that were
        # opened, whatever failed after them.
        ctx["resources"] = resources = contextlib.AsyncExitStack()
        redis = text_redis
        if redis is None:
            redis = text_client(settings.redis_url, service=True)
            resources.push_async_callback(redis.aclose)
        registry = AgentRegistry(redis, keys)
        if settings.agents_file is not None:
            await load_agents(redis, settings)
        status = StatusStore(
            redis,
            keys,
            ttl_s=settings.result_ttl_s,
            worker_name=WORKER_NAME,
            queue=job_queue(settings.queue_name),
            stats_ttl_s=settings.stats_ttl_s,
            usage_ttl_s=settings.usage_ttl_s,
        )
        metrics = serve_metrics(settings)
        if metrics is not None:
            resources.callback(metrics.close)
        ctx["metrics_port"] = metrics.port if metrics else None
        # `worker` is the WakeableWorker built below: it stops picking jobs when it starts draining.
        fair = FairQueue(
            redis, keys, job_queue(settings.queue_name), aging_s=settings.priority_aging_s,
            stats_ttl_s=settings.stats_ttl_s,
        )  # fmt: skip
        ctx["watchdog"] = watchdog = Watchdog(
            settings, redis, status, fair=fair, accepting=lambda: worker.accepting
        )
        watchdog_task = asyncio.create_task(watchdog.run(), name="watchdog")
        resources.push_async_callback(_stop_watchdog, watchdog, watchdog_task)
        planner = LLMPlanner(settings)
        resources.push_async_callback(planner.aclose)
        ctx["pipeline"] = Pipeline(settings, redis, status, registry, planner)
        if settings.queue_order == "fair":
            queue = job_queue(settings.queue_name)
            adopted = await fair.adopt_unindexed()
            if adopted:
                log.warning("queue.adopted", jobs=adopted, why="queued without a place in the fair queue")
            ctx[PICKER] = FairPicker(fair, queue.claim_ttl_s(settings.job_timeout_s))
        if ledger_writer:
            writer, writer_task = await start_ledger_writer(redis, settings)
            resources.push_async_callback(stop_ledger_writer, writer, writer_task)
        if settings.webhooks_in_worker and text_redis is None:  # (not on the demo's in-process stand-in)
            resources.push_async_callback(DelivererThread(settings, WORKER_NAME).start().stop)
        log.info(
            "worker.started",
            worker=WORKER_NAME,
            queue=settings.queue_name,
            concurrency=settings.concurrency,
            ledger_writer=ledger_writer,
            model=settings.model,
            llm_base_url=settings.llm_base_url,
        )

    async def on_drop(ctx: dict[str, Any], job_id: str, code: FailureCode, message: str) -> None:
        await ctx["watchdog"].fail_dropped(job_id, code, message)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        resources: contextlib.AsyncExitStack | None = ctx.pop("resources", None)
        try:
            if resources is not None:
                await resources.aclose()  # every callback runs, even after one raised
        finally:
            log.info("worker.stopped", worker=WORKER_NAME)

    worker = build_arq_worker(
        settings,
        run_plan_job,
        ctx=ctx,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        on_drop=on_drop,
        wake_channel=keys.wake(),
        health_check_key=f"{settings.key_prefix}health:{WORKER_NAME}",
        burst=burst,
        handle_signals=handle_signals,
        pool=queue_pool,
    )
    return worker


async def _stop_watchdog(watchdog: Watchdog, task: asyncio.Task[None]) -> None:
    watchdog.stop()
    await stop_task(task, STOP_TIMEOUT_S)


async def stop_worker(worker: QueueWorker, grace_s: float = 10.0) -> None:
    """Stop taking jobs, let running ones finish (up to `grace_s`), then close the worker.

    For embedded use (demo, tests); `plangate worker` stops on SIGTERM/SIGINT (worker_process).
    """
    worker.stop_taking_jobs()
    running = worker.running()
    if running:
        await asyncio.wait(running, timeout=grace_s)
    await worker.close()
