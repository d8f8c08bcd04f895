"""An in-process Redis stand-in (fakeredis) for the embedded demo: never used against a real deployment."""

from __future__ import annotations

import fakeredis
from fakeredis.aioredis import FakeAsyncRedisMixin
from redis.asyncio import Redis

from worker.queue_backend.arq_worker import QueuePool, pool_with


class EmbeddedRedis:
    """One in-process server and the two clients plangate uses: the queue's (bytes) and ours (text)."""

    def __init__(self) -> None:
        self.server = fakeredis.FakeServer()

    def queue_pool(self, queue_name: str) -> QueuePool:
        """The worker's queue pool on the in-process server."""
        return pool_with(FakeAsyncRedisMixin, queue_name, server=self.server)

    def text_client(self) -> Redis:
        return fakeredis.FakeAsyncRedis(server=self.server, decode_responses=True)
