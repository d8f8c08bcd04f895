"""Where a deliverer runs: a task of the running loop (`plangate webhooks run`), or a thread of a worker
process with an event loop and a Redis pool of its own (DelivererThread, the default)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from redis.asyncio import Redis

from worker.redis_conn import text_client
from worker.settings import Settings
from worker.webhooks.deliverer import Deliverer

STOP_GRACE_S = 2.0 + 5.0  # beyond a poll: an attempt's recording, and closing the connection pools


def start_deliverer(redis: Redis, settings: Settings, name: str) -> tuple[Deliverer, asyncio.Task[None]]:
    """A deliverer as a task of the running loop, on `redis` (`plangate webhooks run`, DelivererThread)."""
    deliverer = Deliverer(redis, settings, name)
    return deliverer, asyncio.create_task(deliverer.run(), name="webhook-deliverer")


async def stop_deliverer(deliverer: Deliverer, task: asyncio.Task[None]) -> None:
    """Stop the loop (cancelled when Redis keeps it from ending), then what it has in flight."""
    deliverer.stop()
    try:
        done, _ = await asyncio.wait({task}, timeout=deliverer.poll_s + 2.0)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await deliverer.close()


class DelivererThread:
    """A deliverer on an event loop of its own, in a thread of the worker process, with its own Redis
    pool: the jobs' loop, busy streaming, never delays a delivery, and a delivery never delays a job."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliverer: Deliverer | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="webhook-deliverer", daemon=True)

    def start(self) -> DelivererThread:
        """Start the thread; returns once its loop runs."""
        self._thread.start()
        self._started.wait(timeout=10)
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        redis = text_client(self._settings.redis_url, service=True)
        try:
            deliverer, task = start_deliverer(redis, self._settings, self._name)
            self._deliverer, self._loop = deliverer, asyncio.get_running_loop()
            self._started.set()
            try:
                await task
            finally:
                await deliverer.close()
        finally:
            self._started.set()
            await redis.aclose()

    async def stop(self) -> None:
        """Ask the loop to end, and wait (in a thread) for it; a loop that does not end in time is left to
        die with the process (its deliveries come due again after their lease)."""
        if self._loop is not None and self._deliverer is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._deliverer.stop)
        await asyncio.to_thread(self._thread.join, self._settings.webhook_poll_s + STOP_GRACE_S)
