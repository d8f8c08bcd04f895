"""The CLI as a user runs it: the agent registry commands and the embedded demo."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable

import pytest

from governance.capabilities import SEED_FORBIDDEN_ACTIONS
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
    assert shown["forbidden_actions"] == list(SEED_FORBIDDEN_ACTIONS)

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
    dana = json.loads(_run(env, "reviewers", "add", "dana", "--json").stdout)["reviewer_key"]
    erin = json.loads(_run(env, "reviewers", "add", "erin", "--json").stdout)["reviewer_key"]
    as_dana = {**env, "PLANGATE_REVIEWER_KEY": dana}
    unauthenticated = _run(env, "review", "list", "--by", "dana")  # no key
    assert unauthenticated.returncode == 2 and "PLANGATE_REVIEWER_KEY" in unauthenticated.stderr
    impostor = _run(
        {**env, "PLANGATE_REVIEWER_KEY": erin}, "review", "approve", escalated["job_id"], "--by", "dana"
    )
    assert impostor.returncode == 2 and "key is wrong" in impostor.stderr
    pending = json.loads(_run(as_dana, "review", "list", "--by", "dana", "--json").stdout)
    assert [p["job_id"] for p in pending] == [escalated["job_id"]]
    approved = _run(
        as_dana, "review", "approve", escalated["job_id"], "--by", "dana", "--note", "ok", "--json"
    )
    assert json.loads(approved.stdout)["review"]["by"] == "dana"
    again = _run(
        {**env, "PLANGATE_REVIEWER_KEY": erin}, "review", "reject", escalated["job_id"], "--by", "erin"
    )
    assert again.returncode == 2 and "already" in again.stderr
    assert dana not in approved.stdout + approved.stderr

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


def test_deny_by_default_governance_from_the_command_line(redis_url: str, key_prefix: str) -> None:
    env = {**os.environ, "PLANGATE_REDIS_URL": redis_url, "PLANGATE_KEY_PREFIX": key_prefix}
    unknown = _run(env, "agents", "add", "dba", "--allow", "drop_database")
    assert unknown.returncode == 2 and len(unknown.stderr.splitlines()) == 1
    assert "unknown allowed side effect: drop_database" in unknown.stderr and "read_docs" in unknown.stderr
    clash = _run(env, "agents", "add", "ops", "--tier", "1", "--allow", "run_terraform")
    assert clash.returncode == 2 and "--lift" in clash.stderr
    typo = _run(env, "agents", "add", "ops", "--allow", "read docs")
    assert typo.returncode == 2 and "not a vocabulary word" in typo.stderr

    assert _run(env, "vocabulary", "add", "read_metrics").returncode == 2  # a reason is required
    added = _run(env, "vocabulary", "add", "read_metrics", "--reason", "dashboards", "--by", "olga")
    assert added.returncode == 0 and "read_metrics" in added.stdout
    words = {w["word"]: w for w in json.loads(_run(env, "vocabulary", "list", "--json").stdout)}
    assert words["read_metrics"]["by"] == "olga" and words["ssh"]["builtin"]

    saved = _run(
        env,
        "agents",
        "add",
        "ops",
        "--tier",
        "1",
        "--allow",
        "read_metrics,run_terraform",
        "--lift",
        "run_terraform",
    )
    assert (
        saved.returncode == 0
        and "lifted forbidden actions" in saved.stdout
        and "issue-key ops" in saved.stdout
    )
    shown = json.loads(_run(env, "agents", "show", "ops", "--json").stdout)
    assert shown["lifted_forbidden"] == ["run_terraform"] and "ssh" in shown["forbidden_actions"]
    assert shown["keyless"] is False and shown["key"] == "none"
    text = _run(env, "agents", "show", "ops").stdout
    assert "lifted_forbidden: run_terraform" in text and "key: none" in text

    _run(env, "agents", "add", "open-door", "--keyless")
    assert json.loads(_run(env, "agents", "show", "open-door", "--json").stdout)["key"].startswith(
        "none: keyless"
    )
    assert _run(env, "agents", "issue-key", "ops").stdout.startswith("pgk_")
    assert json.loads(_run(env, "agents", "show", "ops", "--json").stdout)["key"] == "issued"
    assert _run(env, "agents", "add", "victim:key").returncode == 2
