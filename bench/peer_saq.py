"""A peer baseline: a SAQ 0.26 worker (Redis queue) whose job makes the same streaming call as plangate
with bench/peer_call.py, and the submitter that enqueues it. No governance, heartbeats or ledger."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from saq import Queue, Status, Worker

from bench.peer_call import PEER_FUNCTION, PeerCall, ready_key


async def peer_plan(
    ctx: dict[str, Any], *, model: str, messages: list[dict[str, Any]], options: dict[str, Any]
) -> str:
    """The job: stream one answer, return its text (SAQ keeps it as the job's result)."""
    call: PeerCall = ctx["call"]
    return await call.plan(model, messages, options)


def key_patterns(queue: str) -> list[str]:
    """The SCAN patterns of every key SAQ keeps for `queue` (for clean-up on a shared server)."""
    return [f"saq:{queue}:*", f"saq:job:{queue}:*"]


async def _run(redis_url: str, queue_name: str, llm_url: str, concurrency: int) -> None:
    queue = Queue.from_url(redis_url, name=queue_name)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["call"] = PeerCall(llm_url)
        await queue.redis.set(ready_key(queue_name), 1)  # type: ignore[attr-defined]

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["call"].aclose()

    worker = Worker(
        queue,
        functions=[(PEER_FUNCTION, peer_plan)],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
    )
    await queue.connect()
    try:
        await worker.start()
    finally:
        await queue.disconnect()


class SaqSubmitter:
    """Enqueues the peer job on a SAQ queue and counts the jobs not finished yet."""

    def __init__(self, queue: Queue, redis: Redis) -> None:
        self.queue = queue
        self._redis = redis
        self._incomplete = f"saq:{queue.name}:incomplete"  # SAQ's sorted set of queued + active jobs
        self._keys: list[str] = []

    @classmethod
    async def connect(cls, redis_url: str, queue: str) -> SaqSubmitter:
        """A SAQ queue handle on the benchmark's Redis."""
        saq_queue = Queue.from_url(redis_url, name=queue)
        await saq_queue.connect()
        return cls(saq_queue, Redis.from_url(redis_url))

    async def enqueue(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> None:
        """Enqueue one job."""
        job = await self.queue.enqueue(PEER_FUNCTION, model=model, messages=messages, options=options)
        if job is not None:
            self._keys.append(job.key)

    async def unsuccessful(self) -> int:
        """Jobs enqueued here that did not complete with a non-empty answer (read after the run)."""
        jobs = await self.queue.jobs(self._keys)
        return sum(not (job and job.status == Status.COMPLETE and job.result) for job in jobs)

    async def remaining(self) -> int:
        """Jobs queued or running."""
        return int(await self._redis.zcard(self._incomplete))

    async def aclose(self) -> None:
        """Close the queue's and our connections."""
        await self.queue.disconnect()
        await self._redis.aclose()


def main() -> None:
    """`python -m bench.peer_saq --redis-url URL --queue Q --llm-url URL [--concurrency C]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer_saq")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # what the `saq` command logs by default
    asyncio.run(_run(args.redis_url, args.queue, args.llm_url, args.concurrency))


if __name__ == "__main__":
    main()
