"""The queue side of the arq backend: arq's key names, its job payload written inside our transaction,
and the reads of its queue. Importing this module does not import arq (see the package docstring).

arq keeps a job as: the queue (a sorted set scored by the ms the job may start, holding it from submit
until it finishes, running included), `arq:job:<id>` (the serialized call, with a TTL),
`arq:in-progress:<id>` (set by the worker that picked it, TTL its job timeout + 10 s),
`arq:retry:<id>` (its try counter) and `arq:result:<id>` (unused: keep_result=0).
"""

from __future__ import annotations

from typing import Any

from worker.queue_backend.arq_payload import JOB_FUNCTION, encode_job

# arq.constants, spelled again: importing arq.constants runs arq's package __init__, which imports its
# whole worker, and the CLI's polling path must not. tests/unit/test_queue_backend.py holds them equal.
JOB_KEY_PREFIX = "arq:job:"
IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"
RETRY_KEY_PREFIX = "arq:retry:"
RESULT_KEY_PREFIX = "arq:result:"

TIMEOUT_MARGIN_S = 10
"""Seconds arq's job timeout exceeds ours, so that our own timeout records first."""
IN_PROGRESS_EXTRA_S = 10
"""What arq adds to its job timeout for the TTL of the in-progress mark (Worker.in_progress_timeout_s)."""


def arq_job_timeout_s(job_timeout_s: float) -> float:
    """The timeout arq enforces for plangate's job timeout `job_timeout_s`."""
    return job_timeout_s + TIMEOUT_MARGIN_S


# arq's claim of a job (Worker.start_jobs), as one script. KEYS: the job's in-progress mark, the queue.
# ARGV: job id, now (ms), the mark's TTL (ms). Answers the job's score when claimed, nil when another
# worker holds it, it left the queue (finished) or it is not due yet (re-enqueued with a delay).
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) == 0 or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


class ArqQueue:
    """A JobQueue on arq's keys; `name` is the queue's sorted set (Settings.queue_name)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def queue_key(self) -> str:
        """arq's queue: the sorted set of job ids by the ms they may start."""
        return self._name

    def job_key(self, job_id: str) -> str:
        """arq's payload of the job."""
        return JOB_KEY_PREFIX + job_id

    def claim_key(self, job_id: str) -> str:
        """arq's in-progress mark of the job."""
        return IN_PROGRESS_KEY_PREFIX + job_id

    def retry_key(self, job_id: str) -> str:
        """arq's try counter of the job."""
        return RETRY_KEY_PREFIX + job_id

    def job_keys(self, job_id: str) -> tuple[str, ...]:
        """arq's keys of one job: payload, in-progress mark, try counter, result."""
        return (
            self.job_key(job_id),
            self.claim_key(job_id),
            self.retry_key(job_id),
            RESULT_KEY_PREFIX + job_id,
        )

    def claim_ttl_s(self, job_timeout_s: float) -> float:
        """The TTL arq gives its in-progress mark: its job timeout (ours plus a margin) plus 10 s."""
        return arq_job_timeout_s(job_timeout_s) + IN_PROGRESS_EXTRA_S

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
        """arq's enqueue, inside the caller's transaction: the payload (calling `plan(job_id, request)`,
        JSON) with the job's TTL, and the queue entry due at `due_ms` (default `enqueue_ms`)."""
        # Importing any part of arq runs its package __init__, which imports its whole worker:
        # only submit needs arq, so status, wait, watch and cancel do without.
        from arq.jobs import serialize_job

        job = serialize_job(JOB_FUNCTION, (job_id, request), {}, None, enqueue_ms, serializer=encode_job)
        pipe.psetex(self.job_key(job_id), ttl_s * 1000, job)
        pipe.zadd(self._name, {job_id: enqueue_ms if due_ms is None else due_ms})

    def add_dequeue(self, pipe: Any, job_id: str) -> None:
        """Remove a job no worker holds: its queue entry and payload (a worker would only skip it)."""
        pipe.zrem(self._name, job_id)
        pipe.delete(self.job_key(job_id))

    def add_due_reads(self, pipe: Any, now_ms: int) -> None:
        """The number of queue entries due at `now_ms` (running ones included), and of those due later
        (a deferred retry carries a future score)."""
        pipe.zcount(self._name, "-inf", now_ms)
        pipe.zcount(self._name, f"({now_ms}", "+inf")

    async def due(self, redis: Any, now_ms: int, limit: int) -> list[str]:
        """Up to `limit` ids due at `now_ms`, oldest first (ties in job id order, as arq takes them)."""
        return list(await redis.zrangebyscore(self._name, "-inf", now_ms, start=0, num=limit))

    async def position(self, redis: Any, job_id: str) -> int | None:
        """How many entries are ahead of the job in the queue (running ones included)."""
        rank = await redis.zrank(self._name, job_id)
        return None if rank is None else int(rank)
