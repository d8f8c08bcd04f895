"""A real arq worker running the real pipeline as a task of the test's event loop (against real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Function, Worker

from worker.queue_backend.arq_payload import decode_job, encode_job
from worker.queue_backend.arq_worker import WakeableWorker
from worker.settings import Settings
from worker.worker_app import build_worker, stop_worker


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, *, grace_s: float = 10.0) -> AsyncIterator[Worker]:
    """A worker (pipeline, heartbeats, watchdog, ledger writer) until the block ends; then it stops as
    `stop_worker` does: running jobs get `grace_s` to finish, the rest are handed back."""
    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await stop_worker(worker, grace_s=grace_s)
        with contextlib.suppress(asyncio.CancelledError):
            await task


def bare_worker(settings: Settings, pool: ArqRedis, function: Function, **options: Any) -> WakeableWorker:
    """Our arq worker class around one job function of the test's (no pipeline), on `pool`, with
    plangate's payload codec; `options` are more of arq's Worker arguments."""
    return WakeableWorker(
        wake_channel=f"{settings.key_prefix}wake",
        functions=[function],
        queue_name=settings.queue_name,
        redis_pool=pool,
        handle_signals=False,
        keep_result=0,
        job_serializer=encode_job,
        job_deserializer=decode_job,
        **options,
    )
