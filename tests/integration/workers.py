"""A real arq worker running the real pipeline as a task of the test's event loop (against real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from arq.worker import Worker

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
