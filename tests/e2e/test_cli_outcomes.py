"""Scripts can tell outcomes apart, and a person sees what is going on: the CLI's exit codes for each
way a job ends, cancel and wait edge cases, review shown in `status`, feedback while queued, and the
tenant taken from the agent's record."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync
from worker.cli.main import EXIT_CANCELLED, EXIT_FAILED, EXIT_REFUSED

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def _submit(env: dict[str, str], *args: str) -> str:
    result = _run(env, "submit", "--description", "Plan the certificate rotation", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_wait_exit_codes_tell_each_ending_apart(e2e_env: dict[str, str], start_workers: Callable) -> None:
    start_workers(1)
    env = e2e_env
    done = _run(env, "submit", "--description", "Plan it", "--wait", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "done"
    failed = _run(env, "submit", "--description", "Plan it", "--model", "scripted-402", "--wait")
    assert failed.returncode == EXIT_FAILED and "llm_out_of_credits" in failed.stdout
    refused = _run(env, "submit", "--description", "Plan it", "--side-effect", "ssh", "--wait", "--json")
    assert refused.returncode == EXIT_REFUSED and json.loads(refused.stdout)["refusal"]["code"]

    slow = _submit(env, "--model", "scripted-slow")
    eventually_sync(
        lambda: json.loads(_run(env, "status", slow, "--json").stdout)["phase"] == "PLAN",
        timeout_s=60,
        interval_s=0.1,
        what="PLAN",
    )
    asked = _run(env, "cancel", slow)
    assert asked.returncode == 0 and "cancel requested" in asked.stdout
    assert _run(env, "wait", slow, "--timeout", "30").returncode == EXIT_CANCELLED
    again = _run(env, "cancel", slow)
    assert again.returncode == 2 and "already ended cancelled" in again.stderr

    job_id = json.loads(done.stdout)["job_id"]
    looked = _run(env, "wait", job_id, "--timeout", "0", "--json")
    assert looked.returncode == 0 and json.loads(looked.stdout)["state"] == "done"
    negative = _run(env, "wait", job_id, "--timeout", "-1")
    assert negative.returncode == 2 and "timeout" in negative.stderr


def test_status_shows_a_pending_then_a_decided_review(
    e2e_env: dict[str, str], start_workers: Callable
) -> None:
    start_workers(1)
    env = e2e_env
    result = _run(env, "submit", "--description", "Risky", "--model", "scripted-low-confidence", "--wait")
    job_id = result.stdout.split()[1].rstrip(":")
    assert "review: pending" in _run(env, "status", job_id).stdout
    key = json.loads(_run(env, "reviewers", "add", "dana", "--json").stdout)["reviewer_key"]
    decided = _run({**env, "PLANGATE_REVIEWER_KEY": key}, "review", "reject", job_id, "--by", "dana")
    assert decided.returncode == 0 and f"job {job_id} rejected by reviewer dana" in decided.stdout
    assert "review: rejected by dana" in _run(env, "status", job_id).stdout
    plain = _run(env, "submit", "--description", "Plan it", "--wait", "--json")
    not_escalated = _run(
        {**env, "PLANGATE_REVIEWER_KEY": key},
        "review",
        "approve",
        json.loads(plain.stdout)["job_id"],
        "--by",
        "dana",
    )
    assert not_escalated.returncode == 2 and "only plans that ended ESCALATE" in not_escalated.stderr


def test_a_queued_job_says_it_waits_for_a_worker(e2e_env: dict[str, str], start_workers: Callable) -> None:
    env = e2e_env
    alone = _run(env, "submit", "--description", "Nobody works", "--wait", "--timeout", "5")
    assert alone.returncode == 1
    assert "no worker of queue" in alone.stderr and "still waiting" in alone.stderr

    job_id = _submit(env)
    watch = subprocess.Popen(plangate_cmd("watch", job_id), env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()
        assert f"job {job_id} is queued: waiting for a worker" in first
        start_workers(1)
        assert watch.wait(timeout=60) == 0
        assert "done" in watch.stdout.read()
    finally:
        watch.kill()


def test_submit_takes_the_tenant_from_the_agents_record(
    e2e_env: dict[str, str], start_workers: Callable
) -> None:
    start_workers(1)
    env = e2e_env
    assert _run(env, "tenants", "add", "acme").returncode == 0
    assert _run(env, "agents", "add", "acme-planner", "--tenant", "acme", "--keyless").returncode == 0
    result = _run(env, "submit", "--agent", "acme-planner", "--description", "Plan it", "--wait", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["tenant_id"] == "acme"


def test_tenants_show_prints_readable_values(e2e_env: dict[str, str]) -> None:
    assert (
        _run(e2e_env, "tenants", "add", "acme", "--project", "apollo", "--max-concurrent", "3").returncode
        == 0
    )
    shown = _run(e2e_env, "tenants", "show", "acme").stdout.splitlines()
    assert "projects: apollo" in shown and "max_concurrent: 3" in shown and "tokens_per_day: (none)" in shown
    assert any(line.startswith("today.running: ") for line in shown)
    assert not any("{" in line or "[" in line or "None" in line for line in shown), shown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_the_worker_logs_the_signal_it_stopped_on(
    sig: signal.Signals, start_workers: Callable, tmp_path: Path
) -> None:
    (proc,) = start_workers(1)
    log = tmp_path / "worker-0.log"
    eventually_sync(
        lambda: log.exists() and "worker.started" in log.read_text(),
        timeout_s=60,
        interval_s=0.1,
        what="the worker to start",
    )
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert f"shutdown on {sig.name}" in text and "SIGUSR1" not in text


def test_the_stub_refuses_a_bad_or_taken_port_in_one_line(llm_stub_url: str) -> None:
    taken = llm_stub_url.rsplit(":", 1)[1].split("/")[0]
    for port, says in (("99999", "a port is 0..65535"), (taken, "cannot listen on")):
        result = subprocess.run(
            plangate_cmd("llm-stub", "--port", port), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert says in result.stderr.splitlines()[-1]
