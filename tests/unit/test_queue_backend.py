"""The queue seam: arq's names spelled as arq spells them, our enqueue read back by arq, RunAgain told to
arq as a retry, and no module outside worker/queue_backend/ importing arq (but the documented ones)."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from arq import constants as arq_constants
from arq.jobs import Job, JobStatus
from arq.worker import RetryJob
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisMixin

from worker.queue_backend import JobQueue, QueueWorker, RunAgain, job_queue
from worker.queue_backend import arq_queue as aq
from worker.queue_backend.arq_payload import JOB_FUNCTION
from worker.queue_backend.arq_worker import MAX_TRIES, QueuePool, _job_function, pool_with
from worker.settings import Settings
from worker.worker_app import build_worker

ROOT = Path(__file__).resolve().parents[2]
SEAM = Path("worker/queue_backend")
# Outside the seam: redis_conn builds arq's RedisSettings beside the other connection settings.
MAY_IMPORT_ARQ = {Path("worker/redis_conn.py")}


def _pool(queue: str) -> QueuePool:
    return pool_with(FakeAsyncRedisMixin, queue, server=FakeServer())


def test_arq_key_prefixes_spelled_as_arq_does() -> None:
    assert aq.JOB_KEY_PREFIX == arq_constants.job_key_prefix
    assert aq.IN_PROGRESS_KEY_PREFIX == arq_constants.in_progress_key_prefix
    assert aq.RETRY_KEY_PREFIX == arq_constants.retry_key_prefix
    assert aq.RESULT_KEY_PREFIX == arq_constants.result_key_prefix
    queue = job_queue("q:queue")
    assert queue.job_key("j") == arq_constants.job_key_prefix + "j"
    assert queue.claim_key("j") == arq_constants.in_progress_key_prefix + "j"
    assert set(queue.job_keys("j")) == {
        prefix + "j"
        for prefix in (
            arq_constants.job_key_prefix,
            arq_constants.in_progress_key_prefix,
            arq_constants.retry_key_prefix,
            arq_constants.result_key_prefix,
        )
    }


def test_claim_ttl_is_the_in_progress_ttl_arq_sets() -> None:
    settings = Settings(key_prefix="unit-seam:", job_timeout_s=42)
    worker = build_worker(settings, handle_signals=False, redis_factory=lambda: (_pool("x"), None))  # type: ignore[arg-type,return-value]
    assert worker.in_progress_timeout_s == job_queue(settings.queue_name).claim_ttl_s(settings.job_timeout_s)
    assert worker.in_progress_timeout_s == 42 + aq.TIMEOUT_MARGIN_S + aq.IN_PROGRESS_EXTRA_S
    assert worker.functions[JOB_FUNCTION].timeout_s == 42 + aq.TIMEOUT_MARGIN_S
    assert worker.max_tries == MAX_TRIES and worker.functions[JOB_FUNCTION].max_tries == MAX_TRIES
    assert isinstance(worker, QueueWorker) and isinstance(job_queue(settings.queue_name), JobQueue)


async def test_a_job_enqueued_in_our_transaction_is_one_arq_reads() -> None:
    queue = job_queue("unit-seam:queue")
    pool = _pool(queue.queue_key)
    enqueue_ms = 1_700_000_000_123
    async with pool.pipeline(transaction=True) as pipe:
        queue.add_enqueue(pipe, "job-1", {"agent_id": "a"}, enqueue_ms=enqueue_ms, ttl_s=60)
        await pipe.execute()
    job = Job("job-1", pool, _queue_name=queue.queue_key, _deserializer=pool.job_deserializer)
    info = await job.info()
    assert info is not None
    assert (info.function, list(info.args), info.kwargs) == (JOB_FUNCTION, ["job-1", {"agent_id": "a"}], {})
    assert info.enqueue_time == datetime.fromtimestamp(enqueue_ms / 1000, tz=UTC)
    assert await job.status() is JobStatus.queued
    assert 0 < await pool.pttl(queue.job_key("job-1")) <= 60_000
    assert await queue.position(pool, "job-1") == 0
    assert await queue.due(pool, enqueue_ms, 10) == [b"job-1"]
    assert await queue.due(pool, enqueue_ms - 1, 10) == []
    async with pool.pipeline(transaction=True) as pipe:
        queue.add_dequeue(pipe, "job-1")
        await pipe.execute()
    assert await job.status() is JobStatus.not_found
    assert await queue.position(pool, "job-1") is None


async def test_due_reads_split_the_queue_at_now() -> None:
    queue = job_queue("unit-seam:queue")
    pool = _pool(queue.queue_key)
    await pool.zadd(queue.queue_key, {"due": 100, "now": 200, "later": 300})
    async with pool.pipeline(transaction=False) as pipe:
        queue.add_due_reads(pipe, 200)
        assert await pipe.execute() == [2, 1]


async def test_run_again_is_told_to_arq_as_a_retry() -> None:
    seen: list[tuple[str, Any, float | None]] = []

    async def again(ctx: dict[str, Any], job_id: str, request: Any, enqueued_at: float | None) -> str:
        seen.append((job_id, request, enqueued_at))
        raise RunAgain()

    async def done(ctx: dict[str, Any], job_id: str, request: Any, enqueued_at: float | None) -> str:
        return f"done {job_id}"

    enqueued = datetime(2026, 1, 2, tzinfo=UTC)
    ctx = {"job_id": "job-7", "enqueue_time": enqueued}
    with pytest.raises(RetryJob):
        await _job_function(again)(ctx, "job-7", {"agent_id": "a"})
    assert seen == [("job-7", {"agent_id": "a"}, enqueued.timestamp())]
    assert await _job_function(done)({"job_id": "job-8"}, "job-8", {}) == "done job-8"


def _imports_arq(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if any(name == "arq" or name.startswith("arq.") for name in names):
            return True
    return False


def test_no_module_outside_the_seam_imports_arq() -> None:
    sources = [
        p for top in ("worker", "governance", "ledger", "plangate_base") for p in (ROOT / top).rglob("*.py")
    ]
    assert len(sources) > 40
    importing = {p.relative_to(ROOT) for p in sources if _imports_arq(p)}
    assert Path("worker/queue_backend/arq_worker.py") in importing  # the check sees imports
    assert {p for p in importing if SEAM not in p.parents} == MAY_IMPORT_ARQ


def test_the_seam_interface_imports_no_arq() -> None:
    code = "import sys, worker.queue_backend, worker.queue_backend.arq_queue; print('arq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
