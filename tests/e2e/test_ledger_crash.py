"""The ledger writer as its own process (`plangate ledger serve`), SIGKILLed while 500 jobs complete: after a
restart the ledger holds exactly one terminal event per job and `plangate ledger verify` is ok."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from governance.vocabulary import TERMINAL_STATES
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually
from worker.client import PlanClient
from worker.keys import LEDGER_GROUP, Keys
from worker.settings import Settings

pytestmark = pytest.mark.e2e

JOBS = 500
DEADLINE_S = 120.0
TERMINAL = tuple(TERMINAL_STATES)


def _terminal_counts(ledger: Path) -> dict[str, int]:
    if not ledger.exists():
        return {}
    with sqlite3.connect(ledger, timeout=10) as db:
        try:
            rows = db.execute(
                f"SELECT job_id, COUNT(*) FROM events WHERE kind IN ({','.join('?' * len(TERMINAL))})"
                " GROUP BY job_id",
                TERMINAL,
            ).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return {}
    return dict(rows)


@pytest.fixture
def start_serve(start_plangate: Callable[..., subprocess.Popen]) -> Callable[[], subprocess.Popen]:
    """Start a `plangate ledger serve` process (stopped afterwards with the other test processes)."""
    return lambda: start_plangate("ledger-serve", "ledger", "serve", "--lock-ttl", "1")


async def test_writer_killed_mid_batch_loses_and_duplicates_nothing(
    e2e_env: dict[str, str],
    start_workers: Callable[..., list[subprocess.Popen]],
    start_serve: Callable[[], subprocess.Popen],
    redis: Redis,
) -> None:
    ledger = Path(e2e_env["PLANGATE_LEDGER_PATH"])
    settings = Settings(
        redis_url=e2e_env["PLANGATE_REDIS_URL"],
        key_prefix=e2e_env["PLANGATE_KEY_PREFIX"],
        allowed_models=e2e_env["PLANGATE_ALLOWED_MODELS"].split(","),
    )
    writer = start_serve()
    start_workers(2, "--no-ledger-writer", concurrency="25")
    async with PlanClient.connect(settings) as client:
        ids = [
            await client.submit({"agent_id": "llm-planner-001", "description": f"Plan rollout {n}"})
            for n in range(JOBS)
        ]
        # Kill the writer while terminal events stream in (a batch is being read or committed).
        await eventually(
            lambda: len(_terminal_counts(ledger)) >= 50,
            timeout_s=DEADLINE_S,
            interval_s=0.05,
            what="the first terminal events",
        )
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        killed_at = len(_terminal_counts(ledger))
        start_serve()
        statuses = await asyncio.gather(*(client.wait(job_id, timeout=DEADLINE_S) for job_id in ids))
    assert all(s.state.value in TERMINAL for s in statuses)
    assert killed_at < JOBS, "the writer was killed after everything was recorded; nothing was tested"

    await eventually(
        lambda: len(_terminal_counts(ledger)) == JOBS,
        timeout_s=DEADLINE_S,
        interval_s=0.05,
        what="every terminal event in the ledger",
    )
    counts = _terminal_counts(ledger)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    with sqlite3.connect(ledger) as db:
        submitted = db.execute("SELECT count(DISTINCT job_id), count(*) FROM events WHERE kind = 'submitted'")
        assert submitted.fetchone() == (JOBS, JOBS)

    stream = Keys(settings.key_prefix).ledger_stream()

    async def drained() -> bool:
        return (await redis.xpending(stream, LEDGER_GROUP))["pending"] == 0

    await eventually(drained, timeout_s=30, interval_s=0.05, what="no entries left pending")

    cmd = plangate_cmd("ledger", "verify")
    verify = await asyncio.to_thread(subprocess.run, cmd, env=e2e_env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"ok: {2 * JOBS} rows" in verify.stdout
    assert "anchor: row" in verify.stdout  # the new writer signed the head it took over
