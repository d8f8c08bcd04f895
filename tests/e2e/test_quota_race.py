"""8 concurrent submitters and 3 worker processes against one tenant's limits: never exceeded."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from governance.models import AgentRecord, TenantRecord
from governance.registry import AgentRegistry, TenantRegistry
from plangate_base.clock import utc_day
from plangate_base.vocabulary import RefusalCode
from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.e2e

MAX_CONCURRENT, PER_MINUTE, TOKENS_PER_DAY = 5, 40, 120_000
SUBMITTERS, JOBS_EACH = 8, 12
TERMINAL = ("done", "refused", "failed", "cancelled")
# Admissions and terminal records carry the Redis server's clock (admitted_at_ms, settled_at_ms),
# stamped inside the scripts that take and release a slot: one clock for every worker.


async def test_limits_hold_under_a_race(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]], redis: Redis
) -> None:
    keys = Keys(e2e_env["PLANGATE_KEY_PREFIX"])
    limits = TenantRecord(
        tenant_id="acme",
        max_concurrent=MAX_CONCURRENT,
        jobs_per_minute=PER_MINUTE,
        tokens_per_day=TOKENS_PER_DAY,
    )
    await TenantRegistry(redis, keys).put(limits)
    await AgentRegistry(redis, keys).put(AgentRecord(agent_id="acme-planner", tenant_id="acme", keyless=True))
    start_workers(3, concurrency="8")
    settings = Settings(
        redis_url=e2e_env["PLANGATE_REDIS_URL"],
        key_prefix=e2e_env["PLANGATE_KEY_PREFIX"],
        allowed_models=["scripted", "scripted-slow"],
    )
    peak_tokens = 0
    done_submitting = asyncio.Event()

    async def watch_account() -> None:
        nonlocal peak_tokens
        while not done_submitting.is_set():
            account = await redis.hgetall(keys.tenant_day("acme", utc_day()))
            peak_tokens = max(peak_tokens, int(account.get("reserved", 0)) + int(account.get("used", 0)))
            await asyncio.sleep(0.01)

    async def submitter(n: int) -> list[str]:
        async with PlanClient.connect(settings, tenant_id="acme", agent_id="acme-planner") as client:
            ids = []
            for j in range(JOBS_EACH):
                model = "scripted-slow" if j % 4 == 0 else "scripted"
                ids.append(await client.submit({"description": f"Plan {n}.{j}", "model": model}))
            statuses = [await client.wait(job_id, timeout=120) for job_id in ids]
            return [s.job_id for s in statuses]

    watcher = asyncio.create_task(watch_account())
    ids = list(itertools.chain(*await asyncio.gather(*(submitter(n) for n in range(SUBMITTERS)))))
    done_submitting.set()
    await watcher

    ledger = Path(e2e_env["PLANGATE_LEDGER_PATH"])
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(ledger) as db:
            rows = db.execute(
                "SELECT job_id, kind, payload, reason FROM events WHERE kind IN "
                "('admitted','done','refused','failed','cancelled')"
            ).fetchall()
        if len({r[0] for r in rows if r[1] in TERMINAL}) == len(ids):
            break
        assert time.monotonic() < deadline, "the ledger never caught up"
        await asyncio.sleep(0.1)

    admitted = {job: json.loads(p)["admitted_at_ms"] / 1000 for job, kind, p, _ in rows if kind == "admitted"}
    ended = {job: json.loads(p)["settled_at_ms"] / 1000 for job, kind, p, _ in rows if kind in TERMINAL}
    refusals = [reason for _, kind, _, reason in rows if kind == "refused"]
    intervals = sorted((admitted[j], ended[j]) for j in admitted)
    # concurrency: at every admission, how many admitted jobs had not ended yet
    peak = max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)
    per_minute = max(sum(1 for s, _ in intervals if start <= s < start + 60) for start, _ in intervals)
    assert len(admitted) + len(refusals) == len(ids)
    assert refusals and set(refusals) == {RefusalCode.QUOTA_EXCEEDED.value}  # the limits did bind
    assert peak <= MAX_CONCURRENT, peak
    assert per_minute <= PER_MINUTE, per_minute
    assert peak_tokens <= TOKENS_PER_DAY, peak_tokens
    account = await redis.hgetall(keys.tenant_day("acme", utc_day()))
    assert int(account.get("reserved", 0)) == 0 and int(account["used"]) <= TOKENS_PER_DAY
