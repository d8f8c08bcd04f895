"""Pause, resume and bulk operations as an operator runs them: the CLI and the API's admin routes, against
real `plangate worker` and `plangate serve` processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest

from plangate_base.vocabulary import JobState
from tests.e2e.api_deployment import Deployment, call
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def _ok(env: dict[str, str], *args: str) -> str:
    done = _run(env, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.strip()


def _state(env: dict[str, str], job_id: str) -> str:
    return str(json.loads(_ok(env, "status", job_id, "--json"))["state"])


def test_pause_bulk_and_resume_from_the_command_line(
    e2e_env: dict[str, str], start_workers: Callable[[int], list[subprocess.Popen]]
) -> None:
    env = e2e_env
    _ok(env, "tenants", "add", "acme", "--weight", "2")
    assert "weight=2" in _ok(env, "tenants", "list")
    _ok(env, "agents", "add", "acme-bot", "--tenant", "acme", "--keyless")
    assert "paused by ops" in _ok(env, "pause", "--tenant", "acme", "--reason", "maintenance", "--by", "ops")
    start_workers(1)
    held = [_ok(env, "submit", "--agent", "acme-bot", "--description", f"Plan {n}") for n in range(4)]
    other = _ok(env, "submit", "--description", "Plan for the default tenant", "--wait", "--json")
    assert json.loads(other)["state"] == JobState.DONE
    assert [_state(env, job_id) for job_id in held] == [JobState.QUEUED] * 4

    dry = json.loads(_ok(env, "bulk", "cancel", "--tenant", "acme", "--dry-run", "--json"))
    assert (dry["dry_run"], dry["matched"], dry["changed"]) == (True, 4, 0)
    stats = json.loads(_ok(env, "stats", "--json"))
    assert stats["tenants"]["acme"]["queued"] == 4 and stats["tenants"]["acme"]["paused"]
    assert stats["paused"] == ["tenant:acme"]
    one = json.loads(_ok(env, "bulk", "cancel", "--tenant", "acme", "--older-than", "0", "--json"))
    assert one["changed"] == 4
    assert [_state(env, job_id) for job_id in held] == [JobState.CANCELLED] * 4

    later = [_ok(env, "submit", "--agent", "acme-bot", "--description", f"Later {n}") for n in range(3)]
    assert "resumed by ops" in _ok(env, "resume", "--tenant", "acme", "--by", "ops")
    for job_id in later:
        assert json.loads(_ok(env, "wait", job_id, "--json"))["state"] == JobState.DONE
    bad = _run(env, "pause", "--reason", "no target")
    assert bad.returncode == 2 and "exactly one of --tenant, --agent or --all" in bad.stderr


def test_a_delayed_high_priority_submit_shows_its_start_time(
    e2e_env: dict[str, str], start_workers: Callable[[int], list[subprocess.Popen]]
) -> None:
    start_workers(1)
    queued = json.loads(
        _ok(e2e_env, "submit", "--description", "Later", "--delay", "1", "--priority", "high", "--json")
    )
    assert queued["state"] == JobState.QUEUED and queued["not_before"] and queued["priority"] == "high"
    done = json.loads(_ok(e2e_env, "wait", queued["job_id"], "--json"))
    assert done["state"] == JobState.DONE and done["started_at"] >= queued["not_before"]


@pytest.fixture(scope="module")
def dep(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(redis_base_url, tmp_path_factory.mktemp("queue-ops"))
    try:
        yield deployment.start(workers=1)
    finally:
        deployment.stop()


def test_the_api_pauses_counts_and_resumes_a_tenant(dep: Deployment) -> None:
    admin = dep.token("admin")
    tenant_id = dep.tenant()
    token = dep.token("tenant", tenant_id)
    agent_id, _ = dep.agent(tenant_id)
    pause = {"scope": "tenant", "target": tenant_id, "reason": "noisy"}
    assert call(f"{dep.url}/v1/queue/pause", "POST", token=token, body=pause).status == 403
    paused = call(f"{dep.url}/v1/queue/pause", "POST", token=admin, body=pause)
    assert paused.status == 200 and paused.body["changed"] and f"tenant:{tenant_id}" in paused.body["paused"]

    jobs = [
        call(
            f"{dep.url}/v1/jobs", "POST", token=token, body={"agent_id": agent_id, "description": f"Plan {n}"}
        )
        for n in range(3)
    ]
    ids = [job.body["job_id"] for job in jobs]
    dry = call(
        f"{dep.url}/v1/jobs/bulk-cancel", "POST", token=admin, body={"tenant_id": tenant_id, "dry_run": True}
    )
    assert dry.status == 200 and (dry.body["matched"], dry.body["changed"]) == (3, 0)
    assert sorted(dry.body["job_ids"]) == sorted(ids)
    for job_id in ids:
        assert call(f"{dep.url}/v1/jobs/{job_id}", token=token).body["state"] == JobState.QUEUED

    resumed = call(f"{dep.url}/v1/queue/resume", "POST", token=admin, body=pause)
    assert resumed.status == 200 and resumed.body["changed"] and not resumed.body["paused"]
    for job_id in ids:
        assert call(f"{dep.url}/v1/jobs/{job_id}?wait=60", token=token).body["state"] == JobState.DONE
    assert call(f"{dep.url}/v1/queue/paused", token=admin).body == {}
    retry = call(
        f"{dep.url}/v1/failed/bulk-retry", "POST", token=admin, body={"tenant_id": tenant_id, "dry_run": True}
    )
    assert retry.status == 200 and retry.body["matched"] == 0
