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

from governance.capabilities import SEED_FORBIDDEN_ACTIONS
from governance.models import MAX_CONTEXT_BYTES
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync

pytestmark = pytest.mark.e2e


def _run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def _run_bytes(env: dict[str, str], *args: bytes) -> subprocess.CompletedProcess[str]:
    """The command with arguments given as raw bytes, as a shell passes them (any bytes, not only UTF-8)."""
    command = [os.fsencode(part) for part in plangate_cmd()] + list(args)
    return subprocess.run(command, env=env, capture_output=True, text=True, errors="replace", timeout=120)


def _one_line_bad_input(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("plangate: ")
    return result.stderr


_NO_REDIS = {**os.environ, "PLANGATE_REDIS_URL": "redis://127.0.0.1:1/0"}  # reaching it is exit 3


def test_context_file_up_to_the_limit_is_read_and_a_bigger_one_refused_unread(tmp_path: Path) -> None:
    padding = MAX_CONTEXT_BYTES - len(json.dumps({"log": ""}))
    at_limit = tmp_path / "at-limit.json"
    at_limit.write_text(json.dumps({"log": "x" * padding}))
    assert at_limit.stat().st_size == MAX_CONTEXT_BYTES
    accepted = _run(_NO_REDIS, "submit", "--description", "Plan it", "--context", f"@{at_limit}")
    assert accepted.returncode == 3, accepted.stderr  # past every check of the request: only Redis is missing

    over = tmp_path / "over.json"
    over.write_text(json.dumps({"log": "x" * (padding + 1)}))
    refused = _one_line_bad_input(_run(_NO_REDIS, "submit", "--description", "x", "--context", f"@{over}"))
    assert f"--context @{over} is larger than the context limit of {MAX_CONTEXT_BYTES} bytes" in refused
    # An endless file is refused after MAX_CONTEXT_BYTES + 1 bytes, not read to the end.
    endless = _one_line_bad_input(_run(_NO_REDIS, "submit", "--description", "x", "--context", "@/dev/zero"))
    assert "@/dev/zero is larger than the context limit" in endless


def test_a_missing_unreadable_or_non_utf8_context_file_is_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    out = _one_line_bad_input(_run(_NO_REDIS, "submit", "--description", "x", "--context", f"@{missing}"))
    assert f"@{missing}" in out and "No such file" in out
    out = _one_line_bad_input(_run(_NO_REDIS, "submit", "--description", "x", "--context", f"@{tmp_path}"))
    assert f"@{tmp_path}" in out and "directory" in out
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"note": "café"}'.encode("latin-1"))
    out = _one_line_bad_input(_run(_NO_REDIS, "submit", "--description", "x", "--context", f"@{latin1}"))
    assert f"@{latin1} is not UTF-8 text (byte 13 is 0xe9)" in out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([b"submit", b"--description", b"Plan the caf\xe9 rollout"], "--description"),
        (
            [b"submit", b"--description", b"x", b"--constraint", b"ok", b"--constraint", b"\xff"],
            "--constraint",
        ),
        ([b"submit", b"--description", b"x", b"--side-effect", b"read_\xc3"], "--side-effect"),
        ([b"submit", b"--description", b"x", b"--context", b'{"a": "\xff"}'], "--context"),
        ([b"status", b"\xffjob"], "job_id"),
        ([b"cancel", b"\xffjob"], "job_id"),
        ([b"agents", b"revoke", b"llm-planner-001", b"--reason", b"\x80", b"--by", b"ops"], "--reason"),
        ([b"review", b"approve", b"job-1", b"--by", b"ops", b"--note", b"\xed\xa0\x80"], "--note"),
    ],
    ids=["description", "constraint", "side-effect", "context", "status", "cancel", "revoke", "review"],
)
def test_an_argument_that_is_not_utf8_is_bad_input_naming_it(
    redis_url: str, key_prefix: str, args: list[bytes], named: str
) -> None:
    env = {**os.environ, "PLANGATE_REDIS_URL": redis_url, "PLANGATE_KEY_PREFIX": key_prefix}
    out = _one_line_bad_input(_run_bytes(env, *args))
    assert f"argument {named} is not valid UTF-8: b'" in out


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
        # each run records three rows: its keyless agent saved, the job submitted, the job done
        rows = 3 * len(runs)
        assert checked.returncode == 0 and f"ok: {rows} rows" in checked.stdout, checked
        assert f"anchor: row {rows}" in checked.stdout and "no public key" not in checked.stdout
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
    held = eventually_sync(
        lambda: json.loads(_run(env, "locks", "list", "--json").stdout),
        timeout_s=60,
        interval_s=0,
        what="the lock to be taken",
    )
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
