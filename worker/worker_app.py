"""The arq worker: one settings object in, a configured arq Worker out (JSON jobs, never pickle).

The ledger writer runs inside the worker process by default; `ledger_writer=False` leaves it
to a separate process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func
from redis.asyncio import Redis

from governance.registry import AgentRegistry, load_agents_file
from ledger.ledger_writer import LedgerWriter
from ledger.sqlite_store import LedgerStore
from worker import codec
from worker.client import JOB_FUNCTION
from worker.keys import LEDGER_GROUP, Keys
from worker.ledger_events import WORKER_NAME
from worker.llm_stream import LLMPlanner
from worker.pipeline import Pipeline
from worker.settings import Settings
from worker.status_store import StatusStore

log = structlog.get_logger(__name__)

# Extra seconds arq allows beyond our own job deadline, so our timeout records the failure first.
_ARQ_TIMEOUT_MARGIN_S = 10


async def run_plan_job(ctx: dict[str, Any], job_id: str, request: Any) -> str:
    """The arq job function: hand the job to this process's pipeline."""
    pipeline: Pipeline = ctx["pipeline"]
    return await pipeline.run(job_id, request)


async def start_ledger_writer(redis: Redis, settings: Settings) -> tuple[LedgerWriter, asyncio.Task[None]]:
    """Open the ledger file and start draining the ledger stream into it."""
    store = await LedgerStore.open(settings.ledger_path)
    writer = LedgerWriter(
        redis,
        Keys(settings.key_prefix).ledger_stream(),
        LEDGER_GROUP,
        WORKER_NAME,
        store,
        batch_size=settings.ledger_batch_size,
        batch_delay_s=settings.ledger_batch_delay_s,
    )
    return writer, asyncio.create_task(writer.run(), name="ledger-writer")


async def stop_ledger_writer(writer: LedgerWriter, task: asyncio.Task[None]) -> None:
    """Stop the writer after its current batch and close the ledger file."""
    writer.stop()
    await task
    await writer.store.close()


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    ledger_writer: bool = True,
    handle_signals: bool = True,
    redis_factory: Callable[[], tuple[ArqRedis, Redis]] | None = None,
) -> Worker:
    """An arq Worker running the planning pipeline with these settings.

    `redis_factory` returns (arq pool, text client); by default both connect to REDIS_URL.
    The embedded demo passes one backed by an in-process server.
    """
    keys = Keys(settings.key_prefix)
    ctx: dict[str, Any] = {}
    arq_pool = text_redis = None
    if redis_factory is not None:
        arq_pool, text_redis = redis_factory()

    async def on_startup(ctx: dict[str, Any]) -> None:
        redis = text_redis or Redis.from_url(settings.redis_url, decode_responses=True)
        ctx["text_redis"] = redis
        registry = AgentRegistry(redis, keys)
        if settings.agents_file is not None:
            for record in load_agents_file(settings.agents_file):
                await registry.put(record)
        status = StatusStore(redis, keys, ttl_s=settings.result_ttl_s, worker_name=WORKER_NAME)
        ctx["planner"] = planner = LLMPlanner(settings)
        ctx["pipeline"] = Pipeline(settings, redis, status, registry, planner)
        if ledger_writer:
            ctx["ledger"] = await start_ledger_writer(redis, settings)
        log.info(
            "worker started",
            worker=WORKER_NAME,
            queue=settings.queue_name,
            concurrency=settings.concurrency,
            ledger_writer=ledger_writer,
            model=settings.model,
            llm_base_url=settings.llm_base_url,
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "ledger" in ctx:
            await stop_ledger_writer(*ctx.pop("ledger"))
        if "planner" in ctx:
            await ctx["planner"].aclose()
        if text_redis is None and "text_redis" in ctx:
            await ctx["text_redis"].aclose()
        log.info("worker stopped", worker=WORKER_NAME)

    return Worker(
        functions=[
            func(
                run_plan_job,
                name=JOB_FUNCTION,
                timeout=settings.job_timeout_s + _ARQ_TIMEOUT_MARGIN_S,
                max_tries=settings.job_tries,
            )
        ],
        queue_name=settings.queue_name,
        redis_settings=None if arq_pool else RedisSettings.from_dsn(settings.redis_url),
        redis_pool=arq_pool,
        burst=burst,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        max_jobs=settings.concurrency,
        job_timeout=settings.job_timeout_s + _ARQ_TIMEOUT_MARGIN_S,
        keep_result=0,
        max_tries=settings.job_tries,
        health_check_key=f"{settings.key_prefix}health:{WORKER_NAME}",
        health_check_interval=max(1, int(settings.heartbeat_s * 5)),
        ctx=ctx,
        job_serializer=codec.dumpb,
        job_deserializer=codec.loads,
        log_results=False,
    )


async def stop_worker(worker: Worker, grace_s: float = 10.0) -> None:
    """Stop taking jobs, let running ones finish (up to `grace_s`), then close the worker.

    For embedded use (demo, tests); `plangate worker` stops on SIGTERM/SIGINT through arq.
    """
    worker.allow_pick_jobs = False
    running = [task for task in worker.tasks.values() if not task.done()]
    if running:
        await asyncio.wait(running, timeout=grace_s)
    await worker.close()
