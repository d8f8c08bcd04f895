"""A Redis server (our own, persisting to an append-only file) restarted while workers run."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from governance.vocabulary import JobState
from tests.conftest import _redis_binary, free_port, store_keyless_seed_agent
from tests.faults.conftest import FAULT_REPORT
from worker.client import PlanClient
from worker.errors import QueueUnavailable
from worker.settings import Settings

pytestmark = pytest.mark.e2e

Start = Callable[..., list[subprocess.Popen]]


class OwnRedis:
    """A redis-server this test starts, stops and starts again on the same port and data dir."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if sync_redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except (sync_redis.RedisError, OSError):
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()  # SIGTERM: the append-only file is flushed, then it exits
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop()


async def _wait_all(client: PlanClient, ids: list[str], timeout: float) -> list:
    """Wait for every job, riding out the moments the server is down (QueueUnavailable)."""
    deadline = time.monotonic() + timeout
    statuses = []
    for job_id in ids:
        while True:
            try:
                statuses.append(await client.wait(job_id, timeout=max(0.1, deadline - time.monotonic())))
                break
            except QueueUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    return statuses


async def test_jobs_survive_a_redis_restart(
    own_redis: OwnRedis, e2e_env: dict[str, str], start_workers: Start
) -> None:
    e2e_env["PLANGATE_REDIS_URL"] = own_redis.url  # the workers and the client use our own server
    store_keyless_seed_agent(own_redis.url, e2e_env["PLANGATE_KEY_PREFIX"])
    start_workers(2)
    settings = Settings(
        redis_url=own_redis.url,
        key_prefix=e2e_env["PLANGATE_KEY_PREFIX"],
        allowed_models=["scripted-slow", "scripted"],
    )
    request = {"agent_id": "llm-planner-001", "description": "Plan around a Redis restart"}
    async with PlanClient.connect(settings) as client:
        models = ["scripted-slow", "scripted", "scripted"]
        before = [await client.submit({**request, "model": models[n % 3]}) for n in range(30)]
        own_redis.stop()
        with pytest.raises(QueueUnavailable):  # bounded retries, then a typed error instead of a hang
            await client.status(before[0])
        own_redis.start()
        after = [await client.submit(request) for _ in range(10)]
        statuses = await _wait_all(client, before + after, timeout=120)
    done = sum(s.state is JobState.DONE for s in statuses)
    FAULT_REPORT.append(f"redis restart: jobs={len(statuses)} done={done} lost={len(statuses) - done}")
    assert [s.state for s in statuses] == [JobState.DONE] * len(statuses)
