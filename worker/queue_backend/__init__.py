"""The job queue behind one seam: everything that knows arq lives in this package.

The rest of plangate calls the interface in base.py: `JobQueue` (enqueue and dequeue inside our own
transaction, the queue's reads, and the backend's keys our Lua scripts declare in KEYS), `QueueWorker`
(the job loop of a worker process) and `RunAgain` (keep the job and run it again). `job_queue(name)`
gives the queue of a deployment. arq is in maintenance-only mode upstream; a second backend would be
a second pair of modules beside these, as SAQ puts each queue behind one base class.

- arq_queue.py: arq's key names and its payload written inside our MULTI. Does not import arq at module
  level (importing any part of arq runs its __init__, which imports its whole worker, and the CLI's
  polling path must not): arq's key prefixes are spelled again, and a unit test holds them equal.
- arq_payload.py: arq's job payload (its fields f, a, k, t, et) as JSON, and why arq drops a job.
- arq_worker.py: arq's Worker, woken by pub/sub, configured for plangate, with the RetryJob mapping.

Outside this package only redis_conn.arq_settings (arq's RedisSettings, built beside the other
connection settings) and bench/ (a bare arq worker as the baseline) import arq;
tests/unit/test_queue_backend.py holds that.

Private arq names relied on (not in arq's __all__; checked on upgrade):
- arq.worker.Worker: `main`, `start_jobs`, `run_job`, `finish_failed_job`, `close`, `_poll_iteration`,
  `_release_sem_dec_counter_on_complete`, `_jobs_started`, `sem`, `job_counter`, `max_jobs`, `loop`,
  `in_progress_timeout_s`, `_handle_signals`, `handle_sig`, `_pool`,
  `pool`, `tasks`, `job_tasks`, `allow_pick_jobs`, `burst`, `max_burst_jobs`, `poll_delay_s`,
  `queue_name`, `max_tries`, `health_check_key`, `redis_settings`, `expires_extra_ms`, `ctx`,
  `on_startup`, `on_shutdown`, `job_serializer`, `job_deserializer`;
  the ctx entries `job_id` and `enqueue_time` it passes to a job function.
- arq.utils.timestamp_ms (the clock arq compares a job's queue score with when it claims it).
- arq.worker.RetryJob (run the job again at once, no defer, no try limit check beyond max_tries).
- arq.connections.log_redis_info; arq.jobs.serialize_job; the key prefixes of arq.constants
  (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix), spelled again in
  arq_queue.py and held equal by tests/unit/test_queue_backend.py.
- The in-progress mark's TTL: Worker.in_progress_timeout_s = job timeout + 10 s.
- The payload's dict fields (t, f, a, k, et) and the queue as a sorted set scored by ms.

Tested with arq 0.28.0; pyproject allows arq>=0.26,<0.29 (the overrides follow 0.26-0.28's Worker).
"""

from __future__ import annotations

from worker.queue_backend.arq_payload import JOB_FUNCTION, MALFORMED_FIELD
from worker.queue_backend.arq_queue import ArqQueue
from worker.queue_backend.base import PICKER, JobQueue, Picker, QueueWorker, RunAgain

__all__ = [
    "JOB_FUNCTION",
    "MALFORMED_FIELD",
    "PICKER",
    "JobQueue",
    "Picker",
    "QueueWorker",
    "RunAgain",
    "job_queue",
]


def job_queue(name: str) -> JobQueue:
    """The queue named `name` (Settings.queue_name) on this deployment's backend: arq's."""
    return ArqQueue(name)
