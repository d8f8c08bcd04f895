"""The CLI as a user runs it: the agent registry commands and the embedded demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from governance.models import TIER0_FORBIDDEN_ACTIONS
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


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


def _bare_env() -> dict[str, str]:
    """A user's environment with nothing of plangate's configured (and no Redis listening)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_") and k != "OPENROUTER_API_KEY"}
    env["PLANGATE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens: the demo must not need it
    return env


def test_demo_runs_embedded_with_nothing_configured(tmp_path: Path) -> None:
    env = _bare_env()
    result = _run(env, "demo", "--model", "scripted", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "EMBEDDED" in out and "PREFLIGHT" in out and "VALIDATE" in out
    assert ": done" in out and "decision EXECUTE" in out
    assert "Ledger record" in out and "submitted" in out
    assert "PLANGATE_REDIS_URL" in out  # says how to point it at a real server


def test_a_demo_ledger_it_cannot_keep_is_one_line_at_once(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    started = time.monotonic()
    demo = _run(_bare_env(), "demo", "--model", "scripted", "--ledger", str(tmp_path / "a-file" / "x.db"))
    assert demo.returncode == 2 and time.monotonic() - started < 30, demo
    assert (
        demo.stderr.startswith("plangate: cannot keep the demo's ledger at ")
        and len(demo.stderr.splitlines()) == 1
    )


def _printed_commands(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  plangate ledger ")]


def test_the_demo_keeps_its_ledger_and_its_printed_commands_work(tmp_path: Path) -> None:
    env = _bare_env()
    # The commands are run as a user pastes them: by a shell, `plangate` found on PATH.
    script = Path(sys.executable).parent / "plangate"
    assert script.exists(), f"no plangate console script beside {sys.executable}"
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    runs = []
    for _ in range(2):  # a second run in the same directory appends to the same file
        demo = _run(env, "demo", "--model", "scripted", cwd=tmp_path)
        assert demo.returncode == 0, demo.stderr
        runs.append(demo.stdout)
    ledger = tmp_path / "plangate-demo-ledger.db"
    assert f"Ledger file: {ledger} (kept)" in runs[0]
    assert f"Ledger file: {ledger} (kept after the demo" in runs[1]
    job_ids = [re.search(r"Submitted job (\w+)", out)[1] for out in runs]  # type: ignore[index]
    for out, job_id in zip(runs, job_ids, strict=True):
        show, verify = _printed_commands(out)
        assert show.startswith(f"plangate ledger show {job_id} ")
        shown = subprocess.run(show, shell=True, env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and f"job {job_id}: 2 ledger events" in shown.stdout, shown
        assert "done" in shown.stdout and "decision EXECUTE" in shown.stdout
        # The anchors the demo published lived in its in-process Redis; the file's own still check out.
        checked = subprocess.run(verify, shell=True, env=env, capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and "ok: 4 rows" in checked.stdout, checked
        assert "anchor: row 4" in checked.stdout and "no public key" not in checked.stdout
        assert "warning" not in checked.stdout and "BAD" not in checked.stdout, checked.stdout
    names = {p.name for p in tmp_path.iterdir()}  # (and SQLite's -wal and -shm while they last)
    assert {
        "plangate-demo-ledger.db",
        "plangate-demo-ledger.db.key",
        "plangate-demo-ledger.db.key.pub",
    } <= names
    assert all(name.startswith("plangate-demo-ledger.db") for name in names), names


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
