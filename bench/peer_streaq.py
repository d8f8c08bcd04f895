"""A peer baseline: a streaq worker (Redis streams) whose task makes the same streaming call as plangate
with bench/peer_call.py, and the submitter that enqueues it. No governance, heartbeats or ledger."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from streaq import Worker

from bench.peer_call import PEER_FUNCTION, PeerCall, ready_key


def key_patterns(queue: str) -> list[str]:
    """The SCAN pattern of every key streaq keeps for `queue` (for clean-up on a shared server)."""
    return [f"streaq:{queue}:*"]


def build_streaq_worker(redis_url: str, queue: str, llm_url: str, concurrency: int) -> Worker[PeerCall]:
    """A streaq Worker with its defaults (pickle, results kept 5 minutes) running the peer task."""

    @asynccontextmanager
    async def lifespan() -> AsyncGenerator[PeerCall]:
        call = PeerCall(llm_url)
        await worker.redis.set(ready_key(queue), "1")
        try:
            yield call
        finally:
            await call.aclose()

    worker: Worker[PeerCall] = Worker(
        redis_url=redis_url, queue_name=queue, concurrency=concurrency, lifespan=lifespan
    )

    @worker.task(name=PEER_FUNCTION)
    async def peer_plan(model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        """The task: stream one answer, return its text (streaq keeps it as the task's result)."""
        return await worker.context.plan(model, messages, options)

    return worker


class StreaqSubmitter:
    """Enqueues the peer task on a streaq queue and counts the tasks not finished yet."""

    def __init__(self, worker: Worker[Any], stack: AsyncExitStack) -> None:
        self._worker = worker
        self._stack = stack
        self._ids: list[str] = []

    @classmethod
    async def connect(cls, redis_url: str, queue: str) -> StreaqSubmitter:
        """A streaq client (a Worker object that only enqueues) on the benchmark's Redis."""
        worker: Worker[Any] = Worker(redis_url=redis_url, queue_name=queue, handle_signals=False)
        stack = AsyncExitStack()
        await stack.enter_async_context(worker)
        return cls(worker, stack)

    async def enqueue(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> None:
        """Enqueue one task."""
        task = await self._worker.enqueue_unsafe(PEER_FUNCTION, model, messages, options)
        self._ids.append(task.id)

    async def unsuccessful(self) -> int:
        """Tasks enqueued here that did not succeed with a non-empty answer (read after the run)."""
        worker = self._worker
        raws = await worker.redis.mget([worker.results_key + task_id for task_id in self._ids])
        results = [await worker.deserialize(raw) if raw else None for raw in raws]
        return sum(not (result and result["s"] and result["r"]) for result in results)

    async def remaining(self) -> int:
        """Tasks queued or running (streaq deletes a task's stream entry when it finishes)."""
        return await self._worker.queue_size()

    async def aclose(self) -> None:
        """Close the client's connection."""
        await self._stack.aclose()


def main() -> None:
    """`python -m bench.peer_streaq --redis-url URL --queue Q --llm-url URL [--concurrency C]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer_streaq")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)  # what the `streaq` command logs by default
    build_streaq_worker(args.redis_url, args.queue, args.llm_url, args.concurrency).run_sync()


if __name__ == "__main__":
    main()
