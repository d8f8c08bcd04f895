"""`plangate worker` as a process: signals, a graceful shutdown, and starting over after Redis outages.

First SIGTERM/SIGINT: stop taking jobs and let running ones finish for up to SHUTDOWN_GRACE_S;
then hand the rest back to the queue (their try is not spent). A second signal hands them back
at once. If Redis stays unreachable longer than the connection retries cover, the worker is
rebuilt and started again with backoff instead of exiting. At start, a Redis that is not up yet is
waited for up to REDIS_START_WAIT_S, and a wrong setting (not Redis there, login refused) ends the
process at once. Every way out
closes the worker's resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3

from redis.exceptions import RedisError

from plangate_base.logs import get_logger
from worker.queue_backend import QueueWorker
from worker.redis_conn import UNREACHABLE, wait_for_redis
from worker.settings import Settings
from worker.worker_app import build_worker

log = get_logger(__name__)

_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class _Signals:
    """Counts shutdown signals: the first asks for a graceful stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.graceful = asyncio.Event()
        self.immediate = asyncio.Event()
        self.received: signal.Signals | None = None  # the first one: what the worker stops on

    def __call__(self, signum: signal.Signals) -> None:
        self.received = self.received or signum
        if self.graceful.is_set():
            log.warning("second signal: handing running jobs back now", signal=signum.name)
            self.immediate.set()
        else:
            log.info("signal: finishing running jobs, taking no new ones", signal=signum.name)
            self.graceful.set()


async def serve(settings: Settings, *, burst: bool = False, ledger_writer: bool = True) -> None:
    """Run a worker until a signal (or, with burst, an empty queue); restart it after Redis outages.

    A Redis setting that is wrong from the start (not Redis there, login or database refused) raises
    RedisSetupError within seconds instead of starting over and over; a Redis that is not up yet is
    waited for up to REDIS_START_WAIT_S (then QueueUnavailable). Once started, outages are ridden out."""
    signals = _Signals()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals, sig)
    if not await wait_for_redis(settings.redis_url, signals.graceful, settings.redis_start_wait_s):
        return
    failures = 0
    while True:
        worker = build_worker(settings, burst=burst, ledger_writer=ledger_writer, handle_signals=False)
        try:
            await _run_once(worker, settings, signals)
            return
        except UNREACHABLE as exc:
            delay = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S) - 1)]
            failures += 1
            log.error("lost Redis; starting the worker over", error=str(exc), retry_in_s=delay)
        finally:
            await _close(worker)  # whatever ended the run: the ledger file and every thread get closed
        try:
            await asyncio.wait_for(signals.graceful.wait(), timeout=delay)
            return
        except TimeoutError:
            continue


async def _run_once(worker: QueueWorker, settings: Settings, signals: _Signals) -> None:
    """Run until a signal or the end of a burst, or raise when Redis is lost; the caller closes the worker."""
    main = asyncio.create_task(worker.run(), name="queue-worker")
    stop = asyncio.create_task(signals.graceful.wait())
    try:
        await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if main.done():
        main.result()  # a burst that ended, or the error that ended it
        return
    await _drain(worker, settings, signals)
    worker.stop_signal = signals.received  # so the worker's "shutdown on ..." line names it
    await _close(worker)  # ends the worker's job loop
    with contextlib.suppress(asyncio.CancelledError):
        await main


async def _drain(worker: QueueWorker, settings: Settings, signals: _Signals) -> None:
    """Let running jobs finish within the grace period; hand back whatever still runs after it."""
    worker.stop_taking_jobs()
    pending = set(worker.running())
    if pending:
        log.info("waiting for running jobs", jobs=len(pending), grace_s=settings.shutdown_grace_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.shutdown_grace_s
        immediate = asyncio.create_task(signals.immediate.wait())
        while pending and not immediate.done() and loop.time() < deadline:
            done, _ = await asyncio.wait(
                pending | {immediate}, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
            pending -= done
        immediate.cancel()
    await worker.hand_back_running()  # the pipeline hands its job back to the queue


async def _close(worker: QueueWorker) -> None:
    """Close the worker (a second call does nothing); a failure to close is logged, not raised, so that
    it cannot hide what ended the run."""
    try:
        await worker.close()
    except (RedisError, OSError, sqlite3.Error) as exc:
        log.error("closing the worker failed", error=str(exc), error_type=type(exc).__name__)
