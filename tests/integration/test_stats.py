"""`plangate stats` on a real Redis: data written by hand under the test's prefix, numbers checked exactly."""

from __future__ import annotations

import asyncio
import io
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis as sync_redis
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from plangate_base import codec
from plangate_base.vocabulary import JobState, Phase
from tests.conftest import free_port
from tests.integration.workers import running_worker
from worker.cli.stats import collect_stats, minute_stamps, render_stats
from worker.client import PlanClient
from worker.errors import BadRequest
from worker.keys import LEDGER_GROUP, Keys
from worker.llm_stub.server import StubServer
from worker.metrics import refresh_queue_gauges
from worker.settings import Settings
from worker.web.live_view import LiveView

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, 30, 30, tzinfo=UTC).timestamp()
NOW_MS = int(NOW * 1000)


@pytest.fixture
def stats_settings(redis_url: str, key_prefix: str) -> Settings:
    """Default timings (liveness window 5 s) on the test database and prefix."""
    return Settings(redis_url=redis_url, key_prefix=key_prefix)


def _env(redis_url: str, key_prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(PLANGATE_REDIS_URL=redis_url, PLANGATE_KEY_PREFIX=key_prefix)
    return env


def _plangate(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", *args]


async def _write_scene(redis: Redis, settings: Settings) -> None:
    """4 jobs waiting and 2 deferred, 4 running jobs on 2 workers (one status expired; arq's queue
    holds them too), 3 known workers, 4 minutes of counts (one outside a 10-minute window) and a
    ledger stream of 5 entries with 2 pending."""
    keys = Keys(settings.key_prefix)
    window_ms = int(settings.liveness_window_s * 1000)
    running = {"job-a": NOW_MS - 3000, "job-b": NOW_MS - 500, "job-c": NOW_MS - 1000}
    running["job-gone"] = NOW_MS - 7250
    waiting = {f"queued-{i}": NOW_MS - 1000 + i for i in range(3)} | {"queued-3": NOW_MS}  # due: now included
    deferred = {"retry-1": NOW_MS + 1, "retry-2": NOW_MS + 60_000}
    await redis.zadd(settings.queue_name, {**waiting, **deferred, **{j: NOW_MS - 9000 for j in running}})
    await redis.zadd(keys.running(), running)
    await redis.hset(keys.job("job-a"), mapping={"state": "running", "worker": "host-1:11"})
    await redis.hset(keys.job("job-b"), mapping={"state": "running", "worker": "host-1:11"})
    await redis.hset(keys.job("job-c"), mapping={"state": "running", "worker": "host-2:22"})
    await redis.zadd(
        keys.workers(),
        {
            "host-1:11": NOW_MS - 1000,
            "host-2:22": NOW_MS - window_ms + 1,
            "host-3:33": NOW_MS - window_ms - 1,
        },
    )
    minutes = {
        "202611251230": {"done": 5, "refused": 2, "refused:quota_exceeded": 2},
        "202611251225": {"done": 3, "failed": 1, "failed:llm_timeout": 1, "cancelled": 1},
        "202611251221": {"refused": 1, "refused:locked": 1, "cancelled": 1, "cancelled:revoked": 1},
        "202611251220": {"done": 100, "failed": 7, "failed:internal_error": 7},  # outside the window
    }
    for minute, fields in minutes.items():
        await redis.hset(keys.stats_minute(minute), mapping=fields)
    for i in range(5):
        await redis.xadd(keys.ledger_stream(), {"e": codec.dumps({"n": i})})
    await redis.xgroup_create(keys.ledger_stream(), LEDGER_GROUP, id="0")
    read = await redis.xreadgroup(LEDGER_GROUP, "writer-1", {keys.ledger_stream(): ">"}, count=3)
    first_id = read[0][1][0][0]
    await redis.xack(keys.ledger_stream(), LEDGER_GROUP, first_id)


def test_minute_stamps_end_with_the_current_minute() -> None:
    assert minute_stamps(NOW, 3) == ["202611251228", "202611251229", "202611251230"]


async def test_collect_stats_counts_exactly(redis: Redis, stats_settings: Settings) -> None:
    await _write_scene(redis, stats_settings)

    stats = await collect_stats(redis, stats_settings, 10, now=NOW)

    assert stats["queue"] == f"{stats_settings.key_prefix}queue"
    assert stats["queue_depth"] == 4
    assert stats["queue_deferred"] == 2
    assert stats["running"] == 4
    assert stats["running_by_worker"] == {"host-1:11": 2, "host-2:22": 1, "unknown": 1}
    assert stats["oldest_running_heartbeat_age_s"] == 7.25
    assert stats["workers_live"] == 2
    assert stats["workers_known"] == 3
    assert stats["live_workers"] == ["host-1:11", "host-2:22"]
    assert stats["finished"] == {"done": 8, "refused": 3, "failed": 1, "cancelled": 2}
    assert stats["jobs_per_minute"] == 1.4
    assert [row["minute"] for row in stats["per_minute"]] == minute_stamps(NOW, 10)
    by_minute = {row["minute"]: row["total"] for row in stats["per_minute"]}
    assert by_minute["202611251230"] == 7
    assert by_minute["202611251225"] == 5
    assert by_minute["202611251221"] == 2
    assert sum(by_minute.values()) == 14
    assert stats["refusals"] == {"quota_exceeded": 2, "locked": 1}
    assert list(stats["refusals"]) == ["quota_exceeded", "locked"]  # most frequent first
    assert stats["failures"] == {"llm_timeout": 1}
    assert stats["cancellations"] == {"revoked": 1}
    assert stats["ledger_stream_length"] == 5
    assert stats["ledger_pending"] == 2
    shown = io.StringIO()
    render_stats(stats, shown)
    lines = shown.getvalue().splitlines()
    assert lines[1].split()[:3] == ["queue", "depth", "4"] and lines[2].split()[:2] == ["deferred", "2"]


async def test_a_shorter_window_counts_only_its_minutes(redis: Redis, stats_settings: Settings) -> None:
    await _write_scene(redis, stats_settings)

    stats = await collect_stats(redis, stats_settings, 6, now=NOW)  # 12:25 .. 12:30

    assert stats["finished"] == {"done": 8, "refused": 2, "failed": 1, "cancelled": 1}
    assert stats["refusals"] == {"quota_exceeded": 2}
    assert stats["cancellations"] == {}
    assert stats["jobs_per_minute"] == 2.0


async def test_empty_deployment_and_stream_without_group(redis: Redis, stats_settings: Settings) -> None:
    stats = await collect_stats(redis, stats_settings, now=NOW)
    counts = (stats["queue_depth"], stats["queue_deferred"], stats["running"], stats["workers_live"])
    assert counts == (0, 0, 0, 0)
    assert stats["oldest_running_heartbeat_age_s"] is None
    assert (stats["ledger_stream_length"], stats["ledger_pending"]) == (0, 0)

    await redis.xadd(Keys(stats_settings.key_prefix).ledger_stream(), {"e": "{}"})
    stats = await collect_stats(redis, stats_settings, now=NOW)
    assert (stats["ledger_stream_length"], stats["ledger_pending"]) == (1, 0)


async def test_window_outside_what_redis_keeps_is_refused(redis: Redis, stats_settings: Settings) -> None:
    with pytest.raises(BadRequest):
        await collect_stats(redis, stats_settings, 121, now=NOW)


def test_cli_json(stats_settings: Settings, redis_url: str, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    now = time.time()
    # This minute and the one before: both stay inside a 10-minute window for the next 8 minutes.
    this_minute, last_minute = minute_stamps(now, 2)[::-1]
    with sync_redis.Redis.from_url(redis_url, decode_responses=True) as redis:
        redis.hset(keys.stats_minute(this_minute), mapping={"done": 2, "failed": 1, "failed:llm_timeout": 1})
        redis.hset(keys.stats_minute(last_minute), mapping={"refused": 3, "refused:revoked": 3})
        redis.zadd(stats_settings.queue_name, {"q1": 1, "q2": 2, "later": int(now * 1000) + 3_600_000})

    result = subprocess.run(
        _plangate("stats", "--json"),
        env=_env(redis_url, key_prefix),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    stats = codec.loads(result.stdout)
    assert stats["queue_depth"] == 2
    assert stats["queue_deferred"] == 1
    assert stats["minutes"] == 10
    assert stats["finished"] == {"done": 2, "refused": 3, "failed": 1, "cancelled": 0}
    assert stats["refusals"] == {"revoked": 3}
    assert stats["failures"] == {"llm_timeout": 1}


def test_cli_unreachable_redis_exits_3(key_prefix: str) -> None:
    env = _env(f"redis://127.0.0.1:{free_port()}/0", key_prefix)

    result = subprocess.run(_plangate("stats"), env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0]


def _read_until(proc: subprocess.Popen, marker: str, count: int, deadline_s: float = 20.0) -> str:
    """What the process printed until `marker` appeared `count` times (fails at the deadline)."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + deadline_s
    while seen.count(marker) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"no {count} x {marker!r} in: {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            assert chunk, f"stats --watch exited early: {seen!r}"
            seen += chunk
    return seen


def test_cli_watch_redraws_until_ctrl_c(redis_url: str, key_prefix: str) -> None:
    proc = subprocess.Popen(
        _plangate("stats", "--watch", "0.05"),
        env=_env(redis_url, key_prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        shown = _read_until(proc, "ledger stream", 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert shown.startswith("\x1b[H\x1b[2J")
    assert shown.count("\x1b[H\x1b[2J") >= 2
    assert f"queue {key_prefix}queue" in shown
    assert proc.returncode == 0, err


async def _wait_running(client: PlanClient, job_ids: list[str], count: int) -> list[str]:
    """The jobs of `job_ids` streaming their answer, once `count` of them are (poll with a deadline)."""
    deadline = time.monotonic() + 30
    while True:
        running = [j for j in job_ids if (await client.status(j)).phase is Phase.PLAN]
        if len(running) >= count:
            return running
        assert time.monotonic() < deadline, f"only {len(running)} of {count} jobs started"
        await asyncio.sleep(0.05)


async def test_queue_depth_counts_only_jobs_waiting_for_a_worker(
    redis: Redis, settings: Settings, stub: StubServer
) -> None:
    """arq's queue holds running jobs and deferred retries too: neither is waiting for a worker."""
    settings = settings.model_copy(update={"concurrency": 2})
    stub.slow_seconds = 60.0  # the two running jobs stay in PLAN while we look
    job = {"agent_id": "llm-planner-001", "description": "Plan the capacity check", "model": "scripted-slow"}
    async with PlanClient.connect(settings) as client:
        deferred = await client.submit({**job, "model": "scripted"})
        await redis.zincrby(settings.queue_name, 600_000, deferred)  # as arq's Retry(defer=600) moves it
        slow = [await client.submit(job) for _ in range(3)]
        async with running_worker(settings):
            running = await _wait_running(client, slow, 2)
            waiting = [j for j in slow if j not in running]

            stats = await collect_stats(redis, settings)
            await refresh_queue_gauges(redis, settings)
            jobs = await LiveView(redis, settings).jobs()

            for job_id in [deferred, *slow]:
                await client.cancel(job_id)  # ends the slow streams at their next heartbeat
            for job_id in slow:
                assert (await client.wait(job_id, timeout=30)).state is JobState.CANCELLED

    assert (stats["queue_depth"], stats["running"]) == (1, 2)
    assert REGISTRY.get_sample_value("plangate_queue_depth") == 1
    assert [row["job_id"] for row in jobs["queued"]] == waiting
    assert sorted(row["job_id"] for row in jobs["running"]) == sorted(running)
    assert stats.get("queue_deferred") == 1
    assert REGISTRY.get_sample_value("plangate_queue_deferred") == 1
