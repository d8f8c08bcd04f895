"""The worker side of the arq backend: arq's Worker, woken at once when a job is submitted or a slot
frees, configured for plangate, and plangate's job function in arq's terms.

arq polls the queue every POLL_DELAY (0.5 s): an idle worker picks a job up 250 ms late on
average, and a finished job's slot waits for the next poll too. Submitters PUBLISH on the queue's
wake channel in the same transaction that enqueues; every worker listens and polls at once. The
poll stays as the fallback (a missed message, a deferred retry), so a lost wake-up costs latency,
never a job. Pub/sub is plain Redis that DragonflyDB runs; it costs nothing while idle.

It also tells plangate about a job arq drops without running it (its payload gone, empty or not a
plan call, its try count past the limit or not a number): arq only deletes such a job, which would
leave its status `queued` forever, so the drop hook records it first (see arq_payload.unrunnable).

A job function that raises RunAgain (its attempt was handed back by a takeover) is told to arq as
RetryJob: arq keeps the job and runs it again at once, without finishing (deleting) it. plangate counts
tries itself (hand-backs and takeovers do not burn one), so arq's own limit is out of reach.

This overrides arq's `Worker.main` loop, `start_jobs` (its claim, in one round trip), `run_job`,
`finish_failed_job` and `close`, and hooks its slot-release callback; the private names it relies on
are listed in the package docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis, create_pool, log_redis_info
from arq.utils import timestamp_ms
from arq.worker import RetryJob, Worker, func
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from plangate_base.logs import get_logger
from plangate_base.vocabulary import FailureCode
from worker.queue_backend.arq_payload import (
    JOB_FUNCTION,
    decode_job,
    encode_job,
    request_of,
    try_count_problem,
    unrunnable,
)
from worker.queue_backend.arq_queue import (
    CLAIM,
    IN_PROGRESS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    RETRY_KEY_PREFIX,
    arq_job_timeout_s,
)
from worker.queue_backend.base import PICKER, Picker, RunAgain
from worker.redis_conn import arq_settings
from worker.settings import Settings

log = get_logger(__name__)

DropHook = Callable[[dict[str, Any], str, FailureCode, str], Awaitable[None]]
"""Called with (worker ctx, job id, code, message) before arq drops a job it could not start."""

JobHandler = Callable[[dict[str, Any], str, Any, float | None], Awaitable[str]]
"""plangate's job function: (worker ctx, job id, request, enqueued at as a POSIX time or None) -> outcome."""

QueuePool = ArqRedis
"""The Redis client a worker's job loop uses (arq's pool: bytes, with its job serializers)."""

MAX_TRIES = 1_000_000
"""arq's try limit, out of reach: plangate counts tries itself (hand-backs and takeovers do not burn one)."""

_LISTEN_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
_HEALTH_KEY_DELETE_S = 1.0  # at shutdown; longer means Redis is gone (arq's retries would take ~30 s)
MIN_POLL_GAP_S = 0.01
_PICK_ROUNDS = 4  # picks per poll while arq skips some of the picked jobs


class WakeableWorker(Worker):
    """An arq Worker whose poll loop also wakes on a pub/sub message and when a job ends (a QueueWorker)."""

    def __init__(self, *args: Any, wake_channel: str, on_drop: DropHook | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake_channel = wake_channel
        self.wake = asyncio.Event()
        self.on_drop = on_drop
        self._closed = False
        self._claim: AsyncScript | None = None  # CLAIM, registered on the pool it was built for
        self._claim_pool: ArqRedis | None = None
        # The signal `plangate worker` stops on, named in arq's "shutdown on ..." line; SIGUSR1 (arq's
        # word for a stop asked by the program) when it was stopped from code.
        self.stop_signal: signal.Signals | None = None
        # Set while on_startup runs: close() waits for it, or a stop asked mid-startup would shut down
        # half a worker and leave what the rest of the startup opens (threads, the ledger writer) running.
        self._starting: asyncio.Future[None] | None = None

    @property
    def accepting(self) -> bool:
        """Whether it still picks new jobs (False once draining)."""
        return bool(self.allow_pick_jobs)

    async def run(self) -> None:
        """arq's async_run: pick and run jobs until closed (or the end of a burst)."""
        await self.async_run()

    def stop_taking_jobs(self) -> None:
        """Pick no new jobs; the running ones carry on."""
        self.allow_pick_jobs = False

    def running(self) -> list[asyncio.Task[Any]]:
        """arq's tasks of running jobs (each wraps a job and its bookkeeping), unfinished ones only."""
        return [task for task in self.tasks.values() if not task.done()]

    async def hand_back_running(self) -> None:
        """Cancel every running job function (the pipeline hands its job back to the queue) and wait
        for all of arq's job tasks to end."""
        for task in list(self.job_tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def main(self) -> None:  # arq's main, with an event in place of its fixed sleep
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        with contextlib.suppress(ResponseError):  # an in-process stand-in (the demo) has no INFO
            await log_redis_info(self.pool, log.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            self._starting = asyncio.get_running_loop().create_future()
            try:
                await self.on_startup(self.ctx)
            finally:
                self._starting.set_result(None)
        if self._closed:  # asked to stop while starting up: close() shuts it down now
            return
        listener = asyncio.create_task(self._listen(), name="wake-listener")
        try:
            last_poll = 0.0
            while self._pool is not None:  # close() drops the pool: stop polling
                # A burst of submits is one poll, not one each: polls are at least MIN_GAP apart.
                gap = last_poll + MIN_POLL_GAP_S - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
                self.wake.clear()
                last_poll = time.monotonic()
                await self._poll_iteration()
                if self.burst and await self._burst_done():
                    return
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that lands
                # as the event fires, and the loop would poll a closed pool.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_delay_s):
                        await self.wake.wait()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _burst_done(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started():
            await asyncio.gather(*self.tasks.values())
            return True
        if await self.pool.zcard(self.queue_name) == 0:
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def start_jobs(self, job_ids: list[bytes]) -> None:  # arq's, with its claim in one round trip
        """For each job id: claim it (arq's in-progress mark, set only when no other worker holds it and
        the job is due in the queue) and start it in a task.

        arq claims with WATCH, EXISTS and ZSCORE, then MULTI/PSETEX/EXEC: four round trips a job. The
        CLAIM script makes the same checks and sets the same mark atomically, in one."""
        if self._claim is None or self._claim_pool is not self.pool:
            self._claim, self._claim_pool = self.pool.register_script(CLAIM), self.pool
        claim = self._claim
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter = self.job_counter + 1
            job_id = job_id_b.decode()
            keys = [IN_PROGRESS_KEY_PREFIX + job_id, self.queue_name]
            args = [job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)]
            try:
                score = await claim(keys=keys, args=args)
            except ResponseError as exc:  # as arq's EXEC error: not claimed
                log.warning("job.claim_failed", job_id=job_id, error=str(exc))
                score = None
            except BaseException:
                self.job_counter = self.job_counter - 1
                self.sem.release()
                raise
            if score is None:  # running elsewhere, finished and gone, or deferred
                self.job_counter = self.job_counter - 1
                self.sem.release()
                log.debug("job.claimed_elsewhere", job_id=job_id)
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def run_job(self, job_id: str, score: int) -> None:  # arq's, with its try counter guarded
        try:
            await super().run_job(job_id, score)
        except ResponseError:
            # arq's first step INCRs the job's try counter; one that is not a number (or would overflow)
            # fails every time, and the error would end this worker's loop. Drop the job instead.
            if try_count_problem(await self.pool.get(RETRY_KEY_PREFIX + job_id), self.max_tries) is None:
                raise  # the counter is fine: not ours to handle
            log.error("job.dropped", job_id=job_id, why="arq cannot count its tries")
            await self.finish_failed_job(job_id, None)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        # arq calls this only for a job it drops without calling the job function: record it first,
        # so a Redis error here leaves the job in the queue for a later try instead of lost.
        if self.on_drop is not None:
            async with self.pool.pipeline(transaction=False) as pipe:
                pipe.get(JOB_KEY_PREFIX + job_id)
                pipe.get(RETRY_KEY_PREFIX + job_id)
                raw, tries = await pipe.execute()
            code, message = unrunnable(raw, tries, self.max_tries)
            await self.on_drop(self.ctx, job_id, code, message)
        await super().finish_failed_job(job_id, result_data)

    async def close(self) -> None:
        """arq's close, made to finish: on_shutdown runs and the pool is closed even when Redis is gone.

        arq's own stops at its first failing step (deleting the health key) and leaves the resources
        on_startup opened (the ledger file's thread among them) open, so the process never exits.
        A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._starting is not None and not self._starting.done():
            # Before arq's handle_sig, which cancels the job loop and so on_startup where it stands.
            await asyncio.shield(self._starting)  # on_startup's steps are each bounded by a timeout
        if not self._handle_signals:
            self.handle_sig(self.stop_signal or signal.SIGUSR1)
        if not self._pool:
            return
        try:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            try:
                async with asyncio.timeout(_HEALTH_KEY_DELETE_S):
                    await self.pool.delete(self.health_check_key)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("health_key.delete_failed", error=str(exc))
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
        finally:
            pool, self._pool = self._pool, None
            await pool.aclose(close_connection_pool=True)

    async def _poll_iteration(self) -> None:  # arq's, with the jobs chosen by the ctx's picker
        picker: Picker | None = self.ctx.get(PICKER)
        if picker is None:
            await super()._poll_iteration()
            return
        # Jobs arq skips (not due in its queue, claimed elsewhere) go back only after the free slots were
        # filled from further picks: given back at once, the first of them would be picked again and again.
        skipped: list[str] = []
        for _ in range(_PICK_ROUNDS if self.allow_pick_jobs else 0):
            want = self.max_jobs - self.job_counter
            if self.burst and self.max_burst_jobs >= 0:
                want = min(want, self.max_burst_jobs - self._jobs_started())
            ids = await picker.pick(want) if want > 0 else []
            if not ids:
                break
            before = {job_id: self.tasks.get(job_id) for job_id in ids}
            await self.start_jobs([job_id.encode() for job_id in ids])
            missed = [job_id for job_id in ids if self.tasks.get(job_id) is before[job_id]]
            if not missed:
                break
            skipped += missed
        if skipped:
            await picker.give_back(skipped)
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # arq's: errors in run_job propagate
        await self.heart_beat()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self.wake.set()  # a slot is free: take the next queued job now

    async def _listen(self) -> None:
        """Set the wake event on every message of the wake channel; reconnect with backoff."""
        failures = 0
        while True:
            pubsub = self.pool.pubsub()
            try:
                await pubsub.subscribe(self.wake_channel)
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.wake.set()
            except (RedisError, OSError) as exc:
                delay = _LISTEN_BACKOFF_S[min(failures, len(_LISTEN_BACKOFF_S) - 1)]
                failures += 1
                log.warning("wake_channel.lost", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()


def _job_function(handle: JobHandler) -> Callable[..., Awaitable[str]]:
    """plangate's job function as arq calls it: the job id and enqueue time come from arq's ctx, and
    RunAgain becomes arq's RetryJob."""

    async def run_plan_job(ctx: dict[str, Any], *args: Any) -> str:
        enqueued = ctx.get("enqueue_time")
        try:
            return await handle(
                ctx, ctx["job_id"], request_of(args), enqueued.timestamp() if enqueued else None
            )
        except RunAgain:
            raise RetryJob() from None  # arq keeps the job for its next run

    return run_plan_job


def build_arq_worker(
    settings: Settings,
    handle: JobHandler,
    *,
    ctx: dict[str, Any],
    on_startup: Callable[[dict[str, Any]], Awaitable[None]],
    on_shutdown: Callable[[dict[str, Any]], Awaitable[None]],
    on_drop: DropHook,
    wake_channel: str,
    health_check_key: str,
    burst: bool = False,
    handle_signals: bool = True,
    pool: QueuePool | None = None,
) -> WakeableWorker:
    """An arq worker on `settings.queue_name` running `handle` for every job: JSON payloads (never pickle),
    no results kept, arq's timeout a margin past ours. `pool` is an arq pool to use instead of REDIS_URL."""
    timeout_s = arq_job_timeout_s(settings.job_timeout_s)
    return WakeableWorker(
        wake_channel=wake_channel,
        on_drop=on_drop,
        functions=[func(_job_function(handle), name=JOB_FUNCTION, timeout=timeout_s, max_tries=MAX_TRIES)],
        queue_name=settings.queue_name,
        redis_settings=None if pool else arq_settings(settings.redis_url),
        redis_pool=pool,
        burst=burst,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        max_jobs=settings.concurrency,
        job_timeout=timeout_s,
        keep_result=0,
        max_tries=MAX_TRIES,
        health_check_key=health_check_key,
        health_check_interval=max(1, int(settings.heartbeat_s * 5)),
        ctx=ctx,
        job_serializer=encode_job,
        job_deserializer=decode_job,
        log_results=False,
    )


def pool_with(mixin: type, queue_name: str, **init: Any) -> QueuePool:
    """arq's pool class with `mixin` first among its bases (the demo's in-process fake server), set up
    as the worker's own pool would be; `init` goes to its constructor."""
    pool: QueuePool = type(f"{mixin.__name__}ArqRedis", (mixin, ArqRedis), {})(**init)
    pool.job_serializer = encode_job
    pool.job_deserializer = decode_job
    pool.default_queue_name = queue_name
    return pool
