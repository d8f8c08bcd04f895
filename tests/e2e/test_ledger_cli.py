"""`plangate ledger ...` as a user runs it: migrate, search, tail, export, anchors, verify (exit 1 on
tampering), compact, against a ledger written by the real store and an anchor published to the real Redis."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import tree_store
from ledger.anchors import Anchorer
from ledger.migrations import LATEST
from ledger.projection_check import replay
from ledger.signing import load_or_create_key, public_pem
from ledger.sqlite_store import LedgerStore
from tests.e2e.conftest import plangate_cmd
from tests.eventually import eventually_sync
from tests.unit.ledger_events import agent_output, done_event, submitted_event

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANGATE_")}
    env.update(
        PLANGATE_REDIS_URL=redis_url,
        PLANGATE_KEY_PREFIX=key_prefix,
        PLANGATE_LEDGER_PATH=str(tmp_path / "ledger.db"),
        PLANGATE_LEDGER_SIGNING_KEY=str(tmp_path / "keys" / "ledger.key"),
        PLANGATE_LEDGER_TRUSTED_KEY=str(tmp_path / "auditor" / "ledger.pub"),  # the operator's own copy
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd("ledger", *args), env=env, capture_output=True, text=True, timeout=60)


def job_events(
    job_id: str, description: str, plan_for: str, agent: str = "planner-a"
) -> list[dict[str, Any]]:
    """A job's submitted and done events as the client and RECORD build them; its plan is the scripted
    plan for `plan_for`."""
    who = {"agent_id": agent, "tenant_id": "acme"}
    return [
        submitted_event(job_id, description, created_at="2026-11-01T10:00:00.000Z", **who),
        done_event(
            job_id, agent_output(plan_for), worker="host-1:42", created_at="2026-11-01T10:00:05.000Z", **who
        ),
    ]


@pytest.fixture
async def ledger(cli_env: dict[str, str]) -> Path:
    path = Path(cli_env["PLANGATE_LEDGER_PATH"])
    every = ", ".join(str(version) for version in range(1, LATEST + 1))
    assert f"migrations applied: {every}" in run(cli_env, "migrate").stdout
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(job_events("job-kafka", "Rotate certificates", "Restart the kafka brokers"))
        await store.insert_events(job_events("job-pg", "Upgrade the database", "Fail over postgres", "b"))
    finally:
        await store.close()
    return path


def signing_key(cli_env: dict[str, str]) -> Ed25519PrivateKey:
    """The writer's key (created on first use), and the operator's copy of its public key."""
    key = load_or_create_key(cli_env["PLANGATE_LEDGER_SIGNING_KEY"])
    trusted = Path(cli_env["PLANGATE_LEDGER_TRUSTED_KEY"])
    trusted.parent.mkdir(parents=True, exist_ok=True)
    trusted.write_bytes(public_pem(key.public_key()))
    return key


async def publish_anchor(cli_env: dict[str, str], path: Path) -> dict[str, Any]:
    """What the active writer does: sign the head (an anchor and a checkpoint, kept in the file) and publish
    both to Redis; returns the anchor."""
    key = signing_key(cli_env)
    prefix = cli_env["PLANGATE_KEY_PREFIX"]
    redis = aioredis.Redis.from_url(cli_env["PLANGATE_REDIS_URL"], decode_responses=True)
    store = await LedgerStore.open(path)
    try:
        anchorer = Anchorer(
            store, key, redis, f"{prefix}ledger:anchor", checkpoint_key=f"{prefix}ledger:checkpoint"
        )
        anchor = await anchorer.maybe(force=True)
    finally:
        await store.close()
        await redis.aclose()
    assert anchor is not None
    return anchor


async def test_search_tail_export_show(cli_env: dict[str, str], ledger: Path) -> None:
    found = run(cli_env, "search", "kafka")
    assert found.returncode == 0 and found.stdout.split()[0] == "job-kafka", found.stderr
    as_json = [json.loads(line) for line in run(cli_env, "search", "postgres", "--json").stdout.splitlines()]
    assert [j["job_id"] for j in as_json] == ["job-pg"]
    none = run(cli_env, "search", "nothing-like-this")
    assert (none.returncode, none.stdout) == (0, "") and "no jobs match" in none.stderr, none
    none_json = run(cli_env, "search", "nothing-like-this", "--json")
    assert (none_json.returncode, none_json.stdout) == (0, ""), none_json  # an empty JSON-lines list
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
    anchor = await publish_anchor(cli_env, ledger)
    ok = run(cli_env, "verify")
    assert ok.returncode == 0 and "ok: 4 rows" in ok.stdout and "anchor: row 4" in ok.stdout, ok.stdout

    exported = tmp_path / "anchors.jsonl"
    assert "exported 1 anchors" in run(cli_env, "anchors", "--export", str(exported)).stdout
    [kept] = [json.loads(line) for line in exported.read_text().splitlines()]
    assert kept["signature"] == anchor["signature"]

    with sqlite3.connect(ledger, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq = 4")  # truncate the tail; the chain itself stays whole
        conn.execute("DELETE FROM anchors")  # and hide it from the file's own anchors and checkpoints
        conn.execute("DELETE FROM tree_checkpoints")
        conn.execute("BEGIN")
        tree_store.build(conn)  # and rebuild the stored tree and the read models over what is left
        conn.execute("DELETE FROM jobs")
        conn.execute("DELETE FROM job_search")
        replay(conn, conn)
        conn.execute("COMMIT")
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
    await publish_anchor(cli_env, ledger)
    archive = tmp_path / "archive.db"
    done = run(cli_env, "compact", "--before", "2999-01-01", "--archive", str(archive))
    assert done.returncode == 0 and "archived 4 rows" in done.stdout, done.stderr
    assert "ok: 4 rows" in run(cli_env, "verify").stdout
    checked = run(cli_env, "verify", str(archive))
    assert checked.returncode == 0 and "ok: 4 rows" in checked.stdout, checked
    assert "warning" not in checked.stdout  # an archive is sealed like a ledger: nothing is missing
    assert run(cli_env, "search", "kafka").returncode == 0  # the read models stay


def plangate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plangate_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def wait_recorded(env: dict[str, str], job_id: str, kind: str = "done") -> None:
    """Return once the ledger writer has committed the job's `kind` event (poll with a deadline)."""
    shown: list[subprocess.CompletedProcess[str]] = []  # the latest `show`, for the failure message

    def recorded() -> bool:
        shown[:] = [run(env, "show", job_id, "--json")]
        last = shown[-1]
        return last.returncode == 0 and kind in {e["kind"] for e in json.loads(last.stdout)["events"]}

    eventually_sync(
        recorded,
        timeout_s=60,
        interval_s=0.1,
        what=lambda: f"the ledger to hold {kind} of {job_id}: {shown[-1].stderr}",
    )


def test_real_jobs_are_searchable_by_their_steps_and_compact_into_a_clean_archive(
    e2e_env: dict[str, str], start_workers: Callable[..., list[subprocess.Popen]], tmp_path: Path
) -> None:
    [worker] = start_workers(1)
    descriptions = ["Resize the search cluster", "Rotate the database passwords", "Patch the bastion hosts"]
    jobs = []
    for description in descriptions:
        done = plangate(e2e_env, "submit", "--description", description, "--wait", "--json")
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        # "rollback" is a word of the scripted plan's last step only: not of the description or the notes.
        assert "rollback" in json.dumps(record["output"]["plan"])
        assert "rollback" not in description + record["output"]["notes_for_humans"]
        jobs.append(record["job_id"])
    for job_id in jobs:
        wait_recorded(e2e_env, job_id)
    found = run(e2e_env, "search", "rollback", "--json")
    assert found.returncode == 0 and {
        json.loads(line)["job_id"] for line in found.stdout.splitlines()
    } == set(jobs), found
    worker.send_signal(signal.SIGTERM)  # the writer signs its last head and lets go of the file
    assert worker.wait(timeout=30) == 0

    archive = tmp_path / "old.db"
    compacted = run(e2e_env, "compact", "--before", "2999-01-01", "--archive", str(archive))
    assert compacted.returncode == 0 and "archived" in compacted.stdout, compacted
    for target in (str(archive), "--no-redis"):  # the archive, then the ledger behind its checkpoint
        checked = run(e2e_env, "verify", target)
        assert checked.returncode == 0 and "ok:" in checked.stdout, checked
        assert "warning" not in checked.stdout and "BAD" not in checked.stdout, checked.stdout
    report = json.loads(run(e2e_env, "verify", str(archive), "--json").stdout)
    assert report["ok"] and report["warnings"] == [] and report["rows"] >= 2 * len(jobs), report
    found = run(e2e_env, "search", "rollback", "--json")  # the read models stay with the ledger
    assert {json.loads(line)["job_id"] for line in found.stdout.splitlines()} == set(jobs)


@pytest.fixture
async def long_ledger(cli_env: dict[str, str]) -> Path:
    """A ledger of 1,200 jobs: some 3 MB of JSON lines, far more than a pipe holds."""
    path = Path(cli_env["PLANGATE_LEDGER_PATH"])
    store = await LedgerStore.open(path)
    try:
        for n in range(0, 1200, 200):
            await store.insert_events(
                [e for i in range(n, n + 200) for e in job_events(f"job-{i}", f"Job {i}", "Drain the pool")]
            )
    finally:
        await store.close()
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("export",),
        ("tail", "-n", "5000"),
        ("tail", "-n", "5000", "--json"),
        ("search", "rollback", "--limit", "5000"),
    ],
    ids=["export", "tail", "tail-json", "search"],
)
def test_a_closed_pipe_ends_a_long_listing_quietly(
    cli_env: dict[str, str], long_ledger: Path, args: tuple[str, ...]
) -> None:
    command = f"set -o pipefail; {shlex.join(plangate_cmd('ledger', *args))} | head -n1"
    piped = subprocess.run(["bash", "-c", command], env=cli_env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr  # (pipefail: plangate's own status)
    assert piped.stderr == "" and len(piped.stdout.splitlines()) == 1
