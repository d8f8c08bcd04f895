"""An in-process Redis stand-in (fakeredis) for the embedded demo: never used against a real deployment."""

from __future__ import annotations

import fakeredis
from arq.connections import ArqRedis
from fakeredis.aioredis import FakeAsyncRedisMixin
from redis.asyncio import Redis

from worker.job_payload import decode_job, encode_job


class _FakeArqRedis(FakeAsyncRedisMixin, ArqRedis):
    """arq's pool class, talking to an in-process fake server."""


class EmbeddedRedis:
    """One in-process server and the two clients plangate uses: arq's (bytes) and ours (text)."""

    def __init__(self) -> None:
        self.server = fakeredis.FakeServer()

    def arq_pool(self, queue_name: str) -> ArqRedis:
        pool = _FakeArqRedis(server=self.server)
        pool.job_serializer = encode_job
        pool.job_deserializer = decode_job
        pool.default_queue_name = queue_name
        return pool

    def text_client(self) -> Redis:
        return fakeredis.FakeAsyncRedis(server=self.server, decode_responses=True)
