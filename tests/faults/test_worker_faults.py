"""Workers killed, stopped and restarted while jobs run: every job ends in exactly one terminal record."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from plangate_base.vocabulary import JobState, Phase
from tests.faults.conftest import FAULT_REPORT
from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.e2e

TERMINAL = ("done", "refused", "failed", "cancelled")
Start = Callable[..., list[subprocess.Popen]]
SLOW_JOB = {"agent_id": "llm-planner-001", "description": "Plan a slow one", "model": "scripted-slow"}


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        redis_url=env["PLANGATE_REDIS_URL"],
        key_prefix=env["PLANGATE_KEY_PREFIX"],
        allowed_models=env["PLANGATE_ALLOWED_MODELS"].split(","),
        heartbeat_s=float(env["PLANGATE_HEARTBEAT_S"]),
    )


def _ledger_counts(ledger: Path, kind_list: tuple[str, ...]) -> dict[str, int]:
    if not ledger.exists():
        return {}
    with sqlite3.connect(ledger) as db:
        marks = ",".join("?" * len(kind_list))
        query = f"SELECT job_id, COUNT(*) FROM events WHERE kind IN ({marks}) GROUP BY job_id"
        rows = db.execute(query, kind_list)
        return dict(rows.fetchall())


async def _until(check: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _running_on(redis: Redis, keys: Keys, ids: list[str], worker_pid: int) -> dict[str, str]:
    """Jobs running on the worker with this pid, with their attempt."""
    found = {}
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(keys.job(job_id), ["state", "worker", "attempt"])
        for job_id, (state, worker, attempt) in zip(ids, await pipe.execute(), strict=True):
            if state == "running" and worker and worker.endswith(f":{worker_pid}"):
                found[job_id] = attempt
    return found


async def test_kill_workers_while_200_jobs_run(
    e2e_env: dict[str, str], start_workers: Start, redis: Redis
) -> None:
    """200 jobs across 3 workers; SIGKILL a random worker every few seconds and start a new one."""
    settings = _settings(e2e_env)
    keys = Keys(settings.key_prefix)
    workers = start_workers(3, concurrency="25")
    rng = random.Random(20261125)
    async with PlanClient.connect(settings) as client:
        models = ["scripted-slow", "scripted"]
        ids = [
            await client.submit(
                {"agent_id": "llm-planner-001", "description": f"Plan rack {n}", "model": models[n % 2]}
            )
            for n in range(200)
        ]
        kills, recoveries = 0, []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            states = [await redis.hget(keys.job(j), "state") for j in ids]
            if all(s in TERMINAL for s in states):
                break
            if kills < 5:
                await asyncio.sleep(2.5)  # chaos pacing, not synchronisation: let jobs get going
                victim = rng.choice([w for w in workers if w.poll() is None])
                orphans = await _running_on(redis, keys, ids, victim.pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = time.monotonic()
                kills += 1
                workers = [w for w in workers if w is not victim] + start_workers(1, concurrency="25")

                async def recovered(orphans: dict[str, str] = orphans) -> bool:
                    for job_id, attempt in orphans.items():
                        state, now = await redis.hmget(keys.job(job_id), ["state", "attempt"])
                        if state == "running" and now == attempt:  # still held by the dead attempt
                            return False
                    return True

                await _until(recovered, "the killed worker's jobs taken over", settings.stale_after_s + 5)
                recoveries.append((len(orphans), time.monotonic() - killed_at))
            else:
                await asyncio.sleep(0.2)
        statuses = [await client.status(j) for j in ids]

    assert all(s.state is JobState.DONE for s in statuses), [s.state for s in statuses if not s.terminal]
    ledger = Path(e2e_env["PLANGATE_LEDGER_PATH"])

    async def ledger_complete() -> bool:
        return len(_ledger_counts(ledger, TERMINAL)) == len(ids)

    await _until(ledger_complete, "every terminal event in the ledger", 60)
    counts = _ledger_counts(ledger, TERMINAL)
    duplicates = sum(1 for c in counts.values() if c > 1)
    lost = len(set(ids) - set(counts))
    retried = sum(1 for s in statuses if s.attempt > 1)
    takeovers = sum(_ledger_counts(ledger, ("taken_over",)).values())
    FAULT_REPORT.append(
        f"worker kills: jobs={len(ids)} kills={kills} orphaned={sum(n for n, _ in recoveries)} "
        f"takeovers={takeovers} retried={retried} duplicates={duplicates} lost={lost} "
        f"max_recovery_s={max((t for _, t in recoveries), default=0):.2f} "
        f"(limit {settings.stale_after_s + 5:.1f})"
    )
    assert kills >= 3 and duplicates == 0 and lost == 0
    assert all(t <= settings.stale_after_s + 5 for _, t in recoveries)


async def _wait_plan(client: PlanClient, job_id: str) -> None:
    async def planning() -> bool:
        status = await client.status(job_id)
        return status.phase is Phase.PLAN and status.progress.get("tokens", 0) > 0

    await _until(planning, f"{job_id} to stream", 30)


async def test_sigterm_lets_a_running_job_finish(e2e_env: dict[str, str], start_workers: Start) -> None:
    [worker] = start_workers(1, shutdown_grace_s="30")
    async with PlanClient.connect(_settings(e2e_env)) as client:
        job_id = await client.submit(SLOW_JOB)
        await _wait_plan(client, job_id)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        status = await client.status(job_id)
    assert status.state is JobState.DONE and status.attempt == 1


async def test_after_the_grace_period_a_job_is_handed_back_without_burning_a_try(
    e2e_env: dict[str, str], start_workers: Start, redis: Redis
) -> None:
    settings = _settings(e2e_env)
    [worker] = start_workers(1, shutdown_grace_s="0.5")
    async with PlanClient.connect(settings) as client:
        job_id = await client.submit(SLOW_JOB)
        await _wait_plan(client, job_id)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        handed = await client.status(job_id)
        assert handed.state is JobState.QUEUED and handed.attempt == 1
        start_workers(1)
        done = await client.wait(job_id, timeout=60)
    assert done.state is JobState.DONE and done.attempt == 2
    assert await redis.hget(Keys(settings.key_prefix).job(job_id), "tries") == "1"


async def test_a_second_signal_hands_jobs_back_at_once(
    e2e_env: dict[str, str], start_workers: Start, tmp_path: Path
) -> None:
    [worker] = start_workers(1, shutdown_grace_s="60")
    async with PlanClient.connect(_settings(e2e_env)) as client:
        job_id = await client.submit(SLOW_JOB)
        await _wait_plan(client, job_id)
        worker.send_signal(signal.SIGTERM)
        asked = time.monotonic()

        async def first_signal_seen() -> bool:  # two signals sent at once would merge into one
            return "finishing running jobs" in (tmp_path / "worker-0.log").read_text()

        await _until(first_signal_seen, "the worker to take the first signal", 10)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        assert time.monotonic() - asked < 10  # not the 60 s grace
        assert (await client.status(job_id)).state is JobState.QUEUED


def test_health_probe(e2e_env: dict[str, str], start_workers: Start) -> None:
    from tests.e2e.conftest import plangate_cmd

    def health() -> int:
        return subprocess.run(plangate_cmd("health"), env=e2e_env, capture_output=True, timeout=60).returncode

    assert health() == 1  # no worker yet
    start_workers(1)
    deadline = time.monotonic() + 30
    while health() != 0:
        assert time.monotonic() < deadline, "plangate health never saw the worker"


async def test_health_does_not_count_a_draining_worker(
    e2e_env: dict[str, str], start_workers: Start, tmp_path: Path
) -> None:
    """A worker finishing its jobs after SIGTERM is alive but takes no jobs: health no longer counts it."""
    from tests.e2e.conftest import plangate_cmd

    async def health() -> int:
        run = asyncio.to_thread(subprocess.run, plangate_cmd("health"), env=e2e_env, capture_output=True)
        return (await run).returncode

    [worker] = start_workers(1, shutdown_grace_s="120")
    async with PlanClient.connect(_settings(e2e_env)) as client:
        job_id = await client.submit({**SLOW_JOB, "model": "scripted-stall"})  # silent for 30 s mid-stream
        await _wait_plan(client, job_id)
        assert await health() == 0
        worker.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return "finishing running jobs" in (tmp_path / "worker-0.log").read_text()

        await _until(draining, "the worker to take the signal", 10)

        async def not_counted() -> bool:
            return await health() == 1

        await _until(not_counted, "health to stop counting the draining worker", 20)
        assert worker.poll() is None, "the worker exited: it was never seen draining"
        assert (await client.status(job_id)).state is JobState.RUNNING
