"""The watchdog's beat says whether its worker takes jobs; `plangate health` counts only those."""

from __future__ import annotations

import asyncio

import fakeredis

from plangate_base import clock
from tests.eventually import eventually
from worker.client import PlanClient
from worker.keys import Keys
from worker.ledger_events import WORKER_NAME
from worker.settings import Settings
from worker.status_store import StatusStore
from worker.watchdog import Watchdog


def _watchdog(redis: fakeredis.FakeAsyncRedis, settings: Settings, accepting: list[bool]) -> Watchdog:
    status = StatusStore(redis, Keys(settings.key_prefix), ttl_s=60)
    return Watchdog(settings, redis, status, accepting=lambda: accepting[0])


async def test_a_draining_worker_beats_but_is_not_counted_by_health() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    settings = Settings(key_prefix="unit-health:")
    accepting = [True]
    watchdog = _watchdog(redis, settings, accepting)
    client = PlanClient(redis, settings)
    await watchdog.beat()
    assert await client.healthy_workers(60) == 1
    accepting[0] = False  # the worker started draining
    await watchdog.beat()
    assert await client.healthy_workers(60) == 0
    assert await redis.zcard(Keys(settings.key_prefix).workers()) == 1  # still alive, for `plangate stats`
    await redis.aclose()


async def test_a_stopped_watchdog_takes_its_worker_out_of_health_at_once() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    settings = Settings(key_prefix="unit-health-stop:", metrics_port=0)
    watchdog = _watchdog(redis, settings, [True])
    client = PlanClient(redis, settings)
    task = asyncio.create_task(watchdog.run())
    await eventually(lambda: client.healthy_workers(60), interval_s=0.01, what="the watchdog to beat")
    watchdog.stop()
    await task
    assert await client.healthy_workers(60) == 0
    await redis.aclose()


async def test_the_info_and_the_pruning_go_with_the_first_beat_and_then_once_a_minute() -> None:
    # (an idle worker beats every HEARTBEAT_S: its load on Redis is its beats, two writes each)
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    settings = Settings(key_prefix="unit-beat-cost:")
    keys = Keys(settings.key_prefix)
    watchdog = _watchdog(redis, settings, [True])
    await watchdog.beat()
    assert await redis.hexists(keys.workers_info(), WORKER_NAME)
    await redis.hdel(keys.workers_info(), WORKER_NAME)
    await redis.zadd(keys.workers(), {"gone-two-days": clock.now_ms() - 2 * 86_400_000})
    await watchdog.beat()  # a beat: neither the info again, nor the pruning
    assert not await redis.hexists(keys.workers_info(), WORKER_NAME)
    assert await redis.zscore(keys.workers(), "gone-two-days") is not None
    watchdog._next_info_prune = 0.0  # a minute later
    await watchdog.beat()
    assert await redis.hexists(keys.workers_info(), WORKER_NAME)
    assert await redis.zscore(keys.workers(), "gone-two-days") is None
    await redis.aclose()
