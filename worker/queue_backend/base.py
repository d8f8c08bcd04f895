"""What plangate needs from a job queue: the interface the rest of the code calls (no backend imported).

`JobQueue` is the producer's and the Lua scripts' side: where a job waits, how it is enqueued and
taken out inside our own Redis transaction, and the backend's keys a script must declare (KEYS).
`QueueWorker` is the worker process's side: the loop that picks jobs and runs the pipeline on them.
`RunAgain` is how the pipeline says "keep this job and run it again" without knowing the backend.
arq_queue.py and arq_worker.py implement them on arq; a second backend would implement them again.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Protocol, runtime_checkable


class RunAgain(Exception):
    """Raised by the job function when its attempt was given back to the queue (a takeover fenced it
    out): the backend must keep the job and run it again, not finish and delete it."""


@runtime_checkable
class JobQueue(Protocol):
    """One queue of planning jobs in Redis, as the producer, the views and the lifecycle scripts see it."""

    @property
    def queue_key(self) -> str:
        """The sorted set of jobs by the ms they may start (held until they finish, running ones too)."""
        ...

    def job_key(self, job_id: str) -> str:
        """The key of the job's payload: gone means the job can never run."""
        ...

    def claim_key(self, job_id: str) -> str:
        """The key a worker sets when it picks the job (until it ends): while it exists no other worker
        takes the job."""
        ...

    def job_keys(self, job_id: str) -> tuple[str, ...]:
        """Every key the backend may keep for one job (for clean-up of test and benchmark runs)."""
        ...

    def claim_ttl_s(self, job_timeout_s: float) -> float:
        """How long a claim lives when its worker dies, for plangate's job timeout `job_timeout_s`."""
        ...

    def add_enqueue(
        self,
        pipe: Any,
        job_id: str,
        request: dict[str, Any],
        *,
        enqueue_ms: int,
        ttl_s: int,
        due_ms: int | None = None,
    ) -> None:
        """Queue the commands that enqueue the job on `pipe` (inside the caller's MULTI), due at `due_ms`
        (default: at once)."""
        ...

    def add_dequeue(self, pipe: Any, job_id: str) -> None:
        """Queue the commands that take a job no worker holds out of the queue on `pipe`."""
        ...

    def add_due_reads(self, pipe: Any, now_ms: int) -> None:
        """Queue two reads on `pipe`: the number of entries due at `now_ms`, and of those due later."""
        ...

    async def due(self, redis: Any, now_ms: int, limit: int) -> list[str]:
        """Up to `limit` ids of entries due at `now_ms`, in the order a worker takes them (running too)."""
        ...

    async def position(self, redis: Any, job_id: str) -> int | None:
        """The job's place in the queue (0 first), None when it is not in it."""
        ...


@runtime_checkable
class Picker(Protocol):
    """Chooses which queued jobs a worker starts next (worker.fair_queue.FairPicker), in place of the
    backend's own order (oldest first)."""

    async def pick(self, want: int) -> list[str]:
        """Up to `want` job ids to start now."""
        ...

    async def give_back(self, job_ids: list[str]) -> None:
        """Picked jobs this worker did not start (arq skipped them)."""
        ...


PICKER = "picker"
"""The worker ctx entry of its Picker (set at start-up); without one, the backend's own order."""


@runtime_checkable
class QueueWorker(Protocol):
    """A worker process's job loop: picks jobs from the queue and hands each to plangate's job function."""

    stop_signal: signal.Signals | None
    """The signal the worker stops on (for its shutdown log line); None when stopped from code."""

    @property
    def accepting(self) -> bool:
        """Whether it still picks new jobs (False once draining)."""
        ...

    async def run(self) -> None:
        """Pick and run jobs until closed (or, in burst mode, until the queue is empty)."""
        ...

    def stop_taking_jobs(self) -> None:
        """Pick no new jobs; the running ones carry on."""
        ...

    def running(self) -> list[asyncio.Task[Any]]:
        """The tasks of the jobs running now (and of their bookkeeping)."""
        ...

    async def hand_back_running(self) -> None:
        """Cancel every running job (the pipeline gives each back to the queue, its try not spent) and
        wait until each has ended."""
        ...

    async def close(self) -> None:
        """Stop the loop and close its resources, even when Redis is gone; a second call does nothing."""
        ...
