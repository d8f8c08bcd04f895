"""The CLI as a user runs it: the agent registry commands and the embedded demo."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable

import pytest

from governance.models import TIER0_FORBIDDEN_ACTIONS
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def test_agents_add_list_show(redis_url: str, key_prefix: str) -> None:
    env = {**os.environ, "PLANGATE_REDIS_URL": redis_url, "PLANGATE_KEY_PREFIX": key_prefix}
    added = _run(env, "agents", "add", "observer-9", "--confidence-threshold", "0.85")
    assert added.returncode == 0, added.stderr
    shown = json.loads(_run(env, "agents", "show", "observer-9", "--json").stdout)
    assert shown["tier"] == 0 and shown["confidence_threshold"] == 0.85
    assert shown["forbidden_actions"] == list(TIER0_FORBIDDEN_ACTIONS)

    custom = _run(
        env,
        "agents",
        "add",
        "ops-2",
        "--tier",
        "1",
        "--role",
        "operator",
        "--allow",
        "read_logs",
        "--forbid",
        "ssh",
        "--json",
    )
    assert json.loads(custom.stdout)["allowed_side_effects"] == ["read_logs"]
    listed = json.loads(_run(env, "agents", "list", "--json").stdout)
    assert [a["agent_id"] for a in listed] == ["llm-planner-001", "observer-9", "ops-2"]

    bad = _run(env, "agents", "add", "x", "--tier", "9")
    assert bad.returncode == 2 and "tier" in bad.stderr
    missing = _run(env, "agents", "show", "nobody")
    assert missing.returncode == 2 and "nobody" in missing.stderr


def test_unreachable_redis_is_one_clear_line(key_prefix: str) -> None:
    env = {**os.environ, "PLANGATE_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = _run(env, "submit", "--description", "plan something")
    assert result.returncode == 3
    assert result.stderr.startswith("plangate: cannot reach Redis") and len(result.stderr.splitlines()) == 1
    listed = _run(env, "agents", "list")
    assert listed.returncode == 3 and listed.stderr.startswith("plangate: cannot reach Redis")


def test_demo_runs_embedded_with_nothing_configured(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_") and k != "OPENROUTER_API_KEY"}
    env["PLANGATE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens: the demo must not need it
    result = _run(env, "demo", "--model", "scripted")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "EMBEDDED" in out and "PREFLIGHT" in out and "VALIDATE" in out
    assert ": done" in out and "decision EXECUTE" in out
    assert "Ledger record" in out and "submitted" in out
    assert "PLANGATE_REDIS_URL" in out  # says how to point it at a real server


def test_governance_from_the_command_line(
    e2e_env: dict[str, str], start_workers: Callable[[int], list[subprocess.Popen]]
) -> None:
    start_workers(1)
    env = e2e_env

    slow = _run(
        env, "submit", "--model", "scripted-slow", "--lock", "db/orders", "--description", "Plan a reindex"
    )
    holder = slow.stdout.strip()
    deadline = time.monotonic() + 60
    while True:
        held = json.loads(_run(env, "locks", "list", "--json").stdout)
        if held:
            break
        assert time.monotonic() < deadline, "the lock was never taken"
    assert held[0]["resource"] == "db/orders" and held[0]["job_id"] == holder

    refused = json.loads(
        _run(env, "submit", "--lock", "db/orders", "--description", "Another", "--wait", "--json").stdout
    )
    assert refused["refusal"]["code"] == "locked"
    waited = _run(
        env,
        "submit",
        "--lock",
        "db/orders",
        "--wait-lock",
        "30",
        "--description",
        "Later",
        "--wait",
        "--json",
    )
    assert json.loads(waited.stdout)["state"] == "done"

    escalated = json.loads(
        _run(
            env, "submit", "--model", "scripted-low-confidence", "--description", "Risky", "--wait", "--json"
        ).stdout
    )
    assert escalated["output"]["decision"] == "ESCALATE"
    pending = json.loads(_run(env, "review", "list", "--json").stdout)
    assert [p["job_id"] for p in pending] == [escalated["job_id"]]
    approved = _run(env, "review", "approve", escalated["job_id"], "--by", "dana", "--note", "ok", "--json")
    assert json.loads(approved.stdout)["review"]["by"] == "dana"
    again = _run(env, "review", "reject", escalated["job_id"], "--by", "erin")
    assert again.returncode == 2 and "already" in again.stderr

    handoff = json.loads(
        _run(
            env,
            "submit",
            "--handoff-from",
            escalated["job_id"],
            "--description",
            "Follow up",
            "--wait",
            "--json",
        ).stdout
    )
    assert handoff["output"]["metadata"]["handoff_from"] == escalated["job_id"]

    assert _run(env, "agents", "revoke", "llm-planner-001").returncode == 2  # a reason is required
    assert (
        _run(env, "agents", "revoke", "llm-planner-001", "--reason", "drill", "--by", "ops").returncode == 0
    )
    shown = json.loads(_run(env, "agents", "show", "llm-planner-001", "--json").stdout)
    assert shown["state"]["revoked"] is True and shown["state"]["revoked_by"] == "ops"
    assert shown["state"]["job_id"] and shown["state"]["phase"] and shown["state"]["heartbeat_at"]
    blocked = json.loads(_run(env, "submit", "--description", "x", "--wait", "--json").stdout)
    assert blocked["refusal"]["code"] == "revoked"
    assert _run(env, "agents", "restore", "llm-planner-001", "--by", "ops").returncode == 0
    assert _run(env, "agents", "reset-budget", "llm-planner-001", "--by", "ops").returncode == 0
    assert json.loads(_run(env, "submit", "--description", "x", "--wait", "--json").stdout)["state"] == "done"


@pytest.mark.parametrize(
    ("flags", "setting"),
    [(["--concurrency", "0"], None), (["--concurrency", "-3"], None), ([], "0")],
    ids=["flag-0", "flag-negative", "env-0"],
)
def test_a_worker_that_could_run_no_job_is_refused_at_start(flags: list[str], setting: str | None) -> None:
    from tests.conftest import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env["PLANGATE_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # a regression must not reach a Redis
    if setting is not None:
        env["PLANGATE_CONCURRENCY"] = setting
    try:
        result = subprocess.run(
            plangate_cmd("worker", *flags), env=env, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the worker started instead of refusing its concurrency")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "concurrency" in result.stderr.lower() and "greater than or equal to 1" in result.stderr


def test_health_help_names_every_exit_code() -> None:
    result = subprocess.run(plangate_cmd("health", "--help"), capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert "Exit 0 when" in text and "1 when none does" in text and "3 when Redis" in text
