"""What the benchmarks submit: planning requests through PlanClient, and the same call as a bare arq job."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.bare_arq import BARE_FUNCTION
from governance.models import SEED_AGENT, PlanRequest
from worker.client import PlanClient
from worker.llm.modes import request_options
from worker.prompt import build_messages
from worker.redis_conn import text_client
from worker.settings import Settings

_SUBMITTERS = 32


def plan_request(number: int) -> dict[str, Any]:
    """A planning request for the seed agent (the stub plans from its description)."""
    return {
        "agent_id": SEED_AGENT.agent_id,
        "task_type": "plan",
        "description": f"Create a deployment plan for service {number}: read the inventory, "
        "then draft the rollout and the rollback",
        "constraints": ["No production access", "Use sandbox only"],
    }


def client_for(redis_url: str, prefix: str) -> PlanClient:
    """A PlanClient on the benchmark's Redis and prefix."""
    settings = Settings(redis_url=redis_url, key_prefix=prefix, model="scripted")
    return PlanClient(text_client(redis_url), settings)


async def submit_many(client: PlanClient, count: int) -> list[str]:
    """Submit `count` requests as fast as a few concurrent submitters can."""
    ids: list[str] = [""] * count
    numbers = iter(range(count))

    async def submitter() -> None:
        for number in numbers:
            ids[number] = await client.submit(plan_request(number))

    await asyncio.gather(*(submitter() for _ in range(_SUBMITTERS)))
    return ids


async def submit_at_rate(client: PlanClient, rate: float, duration: float) -> list[tuple[str, float]]:
    """Submit open-loop at `rate` jobs/s for `duration` s; (job id, submit time) of each."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[tuple[str, float]]] = []

    async def one(number: int) -> tuple[str, float]:
        at = time.time()
        return await client.submit(plan_request(number)), at

    for number in range(int(rate * duration)):
        delay = start + number / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number)))
    return list(await asyncio.gather(*tasks))


def baseline_call(number: int) -> list[dict[str, Any]]:
    """The messages plangate sends for request `number` (what every baseline job is given)."""
    return build_messages(SEED_AGENT, PlanRequest.model_validate(plan_request(number)))


async def submit_peer_many(
    enqueue: Callable[[str, list[dict[str, Any]], dict[str, Any]], Awaitable[None]], count: int, llm_url: str
) -> None:
    """Enqueue `count` peer jobs (model, the messages of plan_request(n), the structured-output options)
    as fast as a few concurrent submitters can."""
    options = request_options(llm_url, "json_schema")
    numbers = iter(range(count))

    async def submitter() -> None:
        for number in numbers:
            await enqueue("scripted", baseline_call(number), options)

    await asyncio.gather(*(submitter() for _ in range(_SUBMITTERS)))


class BareSubmitter:
    """Enqueues the baseline job: the messages and options plangate would send, as arq arguments."""

    def __init__(self, pool: ArqRedis, queue: str, llm_url: str) -> None:
        self.pool = pool
        self.queue = queue
        self.options = request_options(llm_url, "json_schema")

    @classmethod
    async def connect(cls, redis_url: str, queue: str, llm_url: str) -> BareSubmitter:
        """An arq pool on the benchmark's Redis."""
        return cls(
            await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue), queue, llm_url
        )

    async def submit_many(self, count: int) -> list[str]:
        """Enqueue `count` baseline jobs; returns their arq job ids."""
        ids = [uuid.uuid4().hex for _ in range(count)]
        numbers = iter(range(count))

        async def submitter() -> None:
            for number in numbers:
                await self.pool.enqueue_job(
                    BARE_FUNCTION,
                    "scripted",
                    baseline_call(number),
                    self.options,
                    _job_id=ids[number],
                    _queue_name=self.queue,
                )

        await asyncio.gather(*(submitter() for _ in range(_SUBMITTERS)))
        return ids

    async def aclose(self) -> None:
        """Close the pool."""
        await self.pool.aclose()
