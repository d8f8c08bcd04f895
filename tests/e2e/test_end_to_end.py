"""Two real worker processes, the scripted endpoint as a process, the client and the CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from governance.models import AgentOutput
from plangate_base.vocabulary import JobState, Phase
from tests.e2e.conftest import plangate_cmd
from worker.cli.main import EXIT_REFUSED
from worker.client import PlanClient
from worker.keys import Keys
from worker.settings import Settings

pytestmark = pytest.mark.e2e

JOBS = 20
WAIT_S = 60.0
TERMINAL = ("done", "refused", "failed", "cancelled")


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        redis_url=env["PLANGATE_REDIS_URL"],
        key_prefix=env["PLANGATE_KEY_PREFIX"],
        allowed_models=env["PLANGATE_ALLOWED_MODELS"].split(","),
    )


def _terminal_counts(ledger: Path) -> dict[str, int]:
    if not ledger.exists():
        return {}
    with sqlite3.connect(ledger) as db:
        rows = db.execute(
            "SELECT job_id, COUNT(*) FROM events "
            f"WHERE kind IN ({','.join('?' * len(TERMINAL))}) GROUP BY job_id",
            TERMINAL,
        ).fetchall()
    return dict(rows)


async def test_twenty_jobs_through_two_worker_processes(
    e2e_env: dict[str, str], start_workers: Callable[[int], list[subprocess.Popen]], redis: Redis
) -> None:
    workers = start_workers(2)
    settings = _settings(e2e_env)
    async with PlanClient.connect(settings) as client:
        ids = [
            await client.submit(
                {
                    "agent_id": "llm-planner-001",
                    "description": f"Plan maintenance window {n} for the db cluster",
                }
            )
            for n in range(JOBS)
        ]
        statuses = await asyncio.gather(*(client.wait(job_id, timeout=WAIT_S) for job_id in ids))

    assert all(p.poll() is None for p in workers), "a worker process died"
    for status in statuses:
        assert status.state is JobState.DONE, status
        AgentOutput.model_validate(status.output.model_dump())  # a valid Foundation Document
        assert status.heartbeat_at and status.started_at and status.finished_at and status.attempt == 1
        entries = await redis.xrange(Keys(settings.key_prefix).job_events(status.job_id))
        phases = [f["phase"] for _, f in entries if f["kind"] in ("phase", "terminal")]
        assert phases == [Phase.PREFLIGHT, Phase.PLAN, Phase.VALIDATE, Phase.RECORD]
        stamps = [f["at"] for _, f in entries]
        assert stamps == sorted(stamps)

    ledger = Path(e2e_env["PLANGATE_LEDGER_PATH"])
    deadline = time.monotonic() + WAIT_S
    while len(_terminal_counts(ledger)) < JOBS:
        assert time.monotonic() < deadline, "the ledger never caught up"
        await asyncio.sleep(0.1)
    counts = _terminal_counts(ledger)
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def _cli(env: dict[str, str], *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_submit_wait_json_unknown_agent_and_slow_status(
    e2e_env: dict[str, str], start_workers: Callable[[int], list[subprocess.Popen]]
) -> None:
    start_workers(1)
    done = _cli(e2e_env, "submit", "--description", "Plan a staging rollout", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status) >= {
        "state",
        "phase",
        "attempt",
        "heartbeat_at",
        "agent_id",
        "tenant_id",
        "submitted_at",
        "started_at",
        "finished_at",
        "progress",
        "output",
        "refusal",
        "error",
    }
    assert status["state"] == "done"
    AgentOutput.model_validate(status["output"])

    refused = _cli(e2e_env, "submit", "--agent", "ghost", "--description", "x", "--wait", "--json")
    assert refused.returncode == EXIT_REFUSED, refused.stderr
    assert json.loads(refused.stdout)["refusal"]["code"] == "unknown_agent"

    bad = _cli(e2e_env, "submit", "--description", "x" * 8_001)
    assert bad.returncode == 2 and "description" in bad.stderr and bad.stdout == ""

    slow = _cli(e2e_env, "submit", "--model", "scripted-slow", "--description", "Plan a slow one")
    job_id = slow.stdout.strip()
    tokens: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        now = json.loads(_cli(e2e_env, "status", job_id, "--json").stdout)
        if now["state"] in TERMINAL:
            break
        if now["phase"] == "PLAN":
            tokens.append(now["progress"].get("tokens", 0))
    assert now["state"] == "done"
    assert len({t for t in tokens if t > 0}) >= 2 and tokens == sorted(tokens), tokens

    shown = _cli(e2e_env, "ledger", "show", job_id, "--json")
    deadline = time.monotonic() + WAIT_S
    while '"kind":"done"' not in shown.stdout.replace(" ", "") and time.monotonic() < deadline:
        shown = _cli(e2e_env, "ledger", "show", job_id, "--json")
    record = json.loads(shown.stdout)
    assert record["job_id"] == job_id and [e["kind"] for e in record["events"]] == ["submitted", "done"]

    assert _cli(e2e_env, "status", "f" * 32).returncode == 2
    assert _cli(e2e_env, "wait", job_id, "--timeout", "5").returncode == 0  # done already
    another = _cli(e2e_env, "submit", "--model", "scripted-slow", "--description", "Plan another slow one")
    timed_out = _cli(e2e_env, "wait", another.stdout.strip(), "--timeout", "0.5")
    assert timed_out.returncode == 1 and "not finished" in timed_out.stderr
