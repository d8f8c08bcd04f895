"""What the job queue holds: jobs waiting for a worker, and jobs deferred to a later time.

The queue keeps a job from submit until it finishes, while it runs too, and a retry deferred to later
is due in the future (JobQueue.add_due_reads). So the queue's size is not what waits. Waiting =
entries due now minus the running jobs (every running job is a due entry); deferred = entries due
later. Three reads of O(log n) at most: no SCAN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker.keys import Keys
from worker.queue_backend import job_queue
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The queue split by what its entries wait for."""

    waiting: int  # due now and not running: what another worker would take at once
    deferred: int  # scored in the future (a retry, a deferred job): no worker may take it yet
    running: int  # running jobs (plangate's running set)


def add_queue_reads(pipe: Any, settings: Settings, now_ms: int) -> None:
    """Queue the three reads on a pipeline; `queue_counts_of` turns their replies into counts."""
    job_queue(settings.queue_name).add_due_reads(pipe, now_ms)
    pipe.zcard(Keys(settings.key_prefix).running())


def queue_counts_of(due: int, deferred: int, running: int) -> QueueCounts:
    """The counts from the replies of `add_queue_reads`, in order."""
    # Clamped: a running entry whose job left the queue (its status expired) waits for the watchdog.
    return QueueCounts(max(0, int(due) - int(running)), int(deferred), int(running))


async def queue_counts(redis: Redis, settings: Settings, now_ms: int) -> QueueCounts:
    """The queue's counts at `now_ms`, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        add_queue_reads(pipe, settings, now_ms)
        return queue_counts_of(*await pipe.execute())
