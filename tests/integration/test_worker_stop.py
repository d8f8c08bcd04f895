"""A worker asked to stop while it is still starting up shuts down whole, after its startup.

Before, a SIGTERM landing in the second or so of on_startup (the ledger writer, the webhook deliverer's
thread) ran on_shutdown on the half-started worker and dropped its pool; the rest of the startup then
started the deliverer thread and the writer, which nothing stopped, and the process never exited.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import func

from tests.integration.workers import bare_worker
from worker.queue_backend.arq_payload import JOB_FUNCTION, decode_job, encode_job
from worker.settings import Settings

_WAIT_S = 10.0


async def test_a_stop_during_startup_waits_for_it_then_shuts_everything_down(settings: Settings) -> None:
    pool = await create_pool(
        RedisSettings.from_dsn(settings.redis_url),
        job_serializer=encode_job,
        job_deserializer=decode_job,
        default_queue_name=settings.queue_name,
    )
    entered, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        entered.set()
        await release.wait()  # the rest of a startup: what it opens must be closed by on_shutdown
        order.append("started")

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        order.append("shut down")

    async def plan_job(ctx: dict[str, Any], *args: Any) -> str:
        return "done"

    function = func(plan_job, name=JOB_FUNCTION)
    worker = bare_worker(settings, pool, function, on_startup=on_startup, on_shutdown=on_shutdown)
    main = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(entered.wait(), _WAIT_S)
        closing = asyncio.create_task(worker.close())
        await asyncio.sleep(0)  # one turn of the loop: close() runs up to its first wait
        assert order == [] and not closing.done()
        release.set()
        await asyncio.wait_for(closing, _WAIT_S)
        await asyncio.wait_for(main, _WAIT_S)  # the job loop ends: the pool is gone
        assert order == ["started", "shut down"]
    finally:
        main.cancel()
        await pool.aclose(close_connection_pool=True)
