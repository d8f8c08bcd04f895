"""The CLI as a user runs it: the agent registry commands and the embedded demo."""

from __future__ import annotations

import json
import os
import subprocess

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
