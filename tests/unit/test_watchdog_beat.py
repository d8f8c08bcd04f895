"""The watchdog's beat says whether its worker takes jobs; `plangate health` counts only those."""

from __future__ import annotations

import asyncio

import fakeredis

from tests.eventually import eventually
from worker.client import PlanClient
from worker.keys import Keys
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
