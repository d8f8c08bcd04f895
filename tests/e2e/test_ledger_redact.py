"""Redaction through the CLI and the writer: a job's payloads become tombstones that keep their hashes, its
read models forget the text, and verify, the checkpoints and the inclusion proofs still hold; a tombstone
no redaction row ordered is caught."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ledger import chain
from ledger.anchors import Anchorer, FileSink
from ledger.ledger_writer import LedgerWriter
from ledger.sqlite_store import LedgerStore
from tests.e2e.conftest import plangate_cmd
from tests.e2e.test_ledger_tamper import Deployment, attacker
from worker.keys import LEDGER_GROUP, Keys

pytestmark = pytest.mark.e2e


def run(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        plangate_cmd("ledger", *args), env=dep.env, capture_output=True, text=True, timeout=60
    )


async def record_and_sign(dep: Deployment, redis: aioredis.Redis, key_prefix: str) -> int:
    """What the active writer does: record what is on the stream, then sign the head."""
    store = await LedgerStore.open(dep.path)
    try:
        writer = LedgerWriter(
            redis, Keys(key_prefix).ledger_stream(), LEDGER_GROUP, "w1", store, block_ms=100
        )
        written = await writer.drain_once()
        await Anchorer(store, dep.key, sinks=[FileSink(dep.sink)]).maybe(force=True)
    finally:
        await store.close()
    return written


async def test_a_redacted_job_keeps_its_proofs(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis, key_prefix: str
) -> None:
    dep = Deployment(tmp_path, redis_url, key_prefix)
    await dep.write(range(0, 4))
    before = tmp_path / "before.json"
    assert run(dep, "prove", "job-2", "-o", str(before)).returncode == 0
    assert "job-2" in run(dep, "search", "Job", "2").stdout

    asked = run(dep, "redact", "--job", "job-2", "--reason", "erasure request 42", "--by", "dpo@example.com")
    assert asked.returncode == 0 and "2 rows" in asked.stdout, asked
    assert await record_and_sign(dep, redis, key_prefix) == 1

    shown = json.loads(run(dep, "show", "job-2", "--json").stdout)["events"]
    assert [e["kind"] for e in shown] == ["submitted", "done", "redacted"]
    assert all(chain.REDACTED_KEY in e["payload"] for e in shown[:2])
    assert shown[2]["payload"]["by"] == "dpo@example.com" and shown[2]["reason"] == "erasure request 42"
    assert run(dep, "search", "Job", "2").stdout == ""  # the read models forgot the text
    ok = dep.verify()
    assert ok.returncode == 0 and "ok: 9 rows" in ok.stdout, ok.stdout

    after = tmp_path / "after.json"
    assert run(dep, "prove", "job-2", "-o", str(after)).returncode == 0
    for bundle in (before, after):  # the proof of the original rows and of their tombstones both hold
        checked = run(dep, "verify-bundle", str(bundle), "--public-key", str(dep.trusted))
        assert checked.returncode == 0, checked.stdout

    # A tombstone put in by hand (the digest right, so the chain holds) names no redaction row.
    with attacker(dep.path) as conn, sqlite3.connect(dep.path) as reader:
        (payload,) = reader.execute(
            "SELECT payload FROM events WHERE job_id = 'job-3' AND kind = 'done'"
        ).fetchone()
        fake = chain.tombstone(chain.payload_digest(payload), "no-such-redaction")
        conn.execute("UPDATE events SET payload = ? WHERE job_id = 'job-3' AND kind = 'done'", (fake,))
    bad = dep.verify()
    assert bad.returncode == 1 and "redacted by no redaction row" in bad.stdout, bad.stdout
