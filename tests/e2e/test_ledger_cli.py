"""`plangate ledger ...` as a user runs it: migrate, search, tail, export, anchors, verify (exit 1 on
tampering), compact, against a ledger written by the real store and an anchor published to the real Redis."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from ledger.anchors import make_anchor
from ledger.signing import load_or_create_key
from ledger.sqlite_store import LedgerStore
from tests.e2e.conftest import plangate_cmd

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=redis_url,
        PLANGATE_KEY_PREFIX=key_prefix,
        PLANGATE_LEDGER_PATH=str(tmp_path / "ledger.db"),
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd("ledger", *args), env=env, capture_output=True, text=True, timeout=60)


def job_events(job_id: str, description: str, step: str, agent: str = "planner-a") -> list[dict[str, Any]]:
    base = {"job_id": job_id, "agent_id": agent, "tenant_id": "acme", "worker": "host-1:42"}
    output = {"steps": [{"title": step, "description": "carefully"}], "notes_for_humans": ["call Bob"]}
    return [
        {**base, "event_id": uuid.uuid4().hex, "kind": "submitted", "created_at": "2026-11-01T10:00:00.000Z",
         "payload": {"task_type": "plan", "description": description}},
        {**base, "event_id": uuid.uuid4().hex, "kind": "done", "decision": "EXECUTE", "model": "m",
         "created_at": "2026-11-01T10:00:05.000Z", "payload": {"output": output}},
    ]  # fmt: skip


@pytest.fixture
async def ledger(cli_env: dict[str, str]) -> Path:
    path = Path(cli_env["PLANGATE_LEDGER_PATH"])
    assert "migrations applied: 1, 2, 3, 4" in run(cli_env, "migrate").stdout
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(job_events("job-kafka", "Rotate certificates", "Restart the kafka brokers"))
        await store.insert_events(job_events("job-pg", "Upgrade the database", "Fail over postgres", "b"))
    finally:
        await store.close()
    return path


def publish_anchor(cli_env: dict[str, str], path: Path) -> dict[str, Any]:
    """What the active writer does: sign the head and publish it to Redis; returns the anchor."""
    key = load_or_create_key(f"{path}.key")
    with sqlite3.connect(path) as conn:
        seq, head = conn.execute("SELECT seq, row_hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    anchor = make_anchor(key, seq, head, seq)
    client = sync_redis.Redis.from_url(cli_env["PLANGATE_REDIS_URL"])
    try:
        client.set(f"{cli_env['PLANGATE_KEY_PREFIX']}ledger:anchor", json.dumps(anchor))
    finally:
        client.close()
    return anchor


async def test_search_tail_export_show(cli_env: dict[str, str], ledger: Path) -> None:
    found = run(cli_env, "search", "kafka")
    assert found.returncode == 0 and found.stdout.split()[0] == "job-kafka", found.stderr
    as_json = [json.loads(line) for line in run(cli_env, "search", "postgres", "--json").stdout.splitlines()]
    assert [j["job_id"] for j in as_json] == ["job-pg"]
    assert run(cli_env, "search", "nothing-like-this").returncode == 1
    assert run(cli_env, "search", "kafka", "--agent", "b", "--json").stdout == ""

    tail = run(cli_env, "tail", "-n", "3", "--json").stdout.splitlines()
    assert [json.loads(e)["seq"] for e in tail] == [2, 3, 4]
    exported = run(cli_env, "export", "--since", "2026-11-01T10:00:01Z", "--decision", "EXECUTE").stdout
    rows = [json.loads(line) for line in exported.splitlines()]
    assert [(r["job_id"], r["kind"], r["reviewer"], r["host"]) for r in rows] == [
        ("job-kafka", "done", None, "host-1"),
        ("job-pg", "done", None, "host-1"),
    ]
    shown = json.loads(run(cli_env, "show", "job-pg", "--json").stdout)
    assert set(shown) == {"job_id", "events"} and len(shown["events"]) == 2
    assert run(cli_env, "export", "--since", "yesterday").returncode == 2  # one-line error, not a traceback


async def test_verify_ok_then_tampered_exits_1(cli_env: dict[str, str], ledger: Path, tmp_path: Path) -> None:
    anchor = publish_anchor(cli_env, ledger)
    ok = run(cli_env, "verify")
    assert ok.returncode == 0 and "ok: 4 rows" in ok.stdout and "anchor: row 4" in ok.stdout, ok.stdout

    exported = tmp_path / "anchors.jsonl"
    with sqlite3.connect(ledger) as conn:  # keep one anchor in the file too, then export it
        conn.execute(
            "INSERT INTO anchors (head_seq, head_hash, row_count, created_at, key_id, signature)"
            " VALUES (:head_seq, :head_hash, :row_count, :created_at, :key_id, :signature)",
            anchor,
        )
    assert "exported 1 anchors" in run(cli_env, "anchors", "--export", str(exported)).stdout

    with sqlite3.connect(ledger) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq = 4")  # truncate the tail; the chain itself stays whole
        conn.execute("DELETE FROM anchors")  # and hide it from the file's own anchors
    bad = run(cli_env, "verify")  # the anchor in Redis still tells
    assert bad.returncode == 1 and "truncated at row 4" in bad.stdout, bad.stdout
    offline = run(cli_env, "verify", "--no-redis", "--anchors", str(exported))  # so does the export
    assert offline.returncode == 1 and "truncated at row 4" in offline.stdout

    with sqlite3.connect(ledger) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET decision = 'SKIP' WHERE seq = 2")
    edited = run(cli_env, "verify", "--no-redis")
    assert edited.returncode == 1 and "BAD: edited at row 2" in edited.stdout


async def test_compact_keeps_the_chain_verifiable(
    cli_env: dict[str, str], ledger: Path, tmp_path: Path
) -> None:
    publish_anchor(cli_env, ledger)  # creates the signing key beside the ledger
    archive = tmp_path / "archive.db"
    done = run(cli_env, "compact", "--before", "2999-01-01", "--archive", str(archive))
    assert done.returncode == 0 and "archived 4 rows" in done.stdout, done.stderr
    assert "ok: 4 rows" in run(cli_env, "verify").stdout
    assert "ok: 4 rows" in run(cli_env, "verify", str(archive)).stdout
    assert run(cli_env, "search", "kafka").returncode == 0  # the read models stay
