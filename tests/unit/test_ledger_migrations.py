"""Migrations, search and compaction against real SQLite files."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import migrations
from ledger.compaction import compact
from ledger.errors import CompactionError, SchemaTooNew
from ledger.queries import EventFilter, export_events, search, show_job
from ledger.sqlite_store import LedgerStore
from ledger.verify import verify_ledger


def v1_row(n: int) -> tuple[Any, ...]:
    payload = {"task_type": "plan", "description": f"legacy job {n}"}
    return (uuid.uuid4().hex, "submitted", f"job-{n}", "agent-a", "t", "2026-01-01T00:00:00.000Z", 0,
            "old-host:1", None, None, None, json.dumps(payload))  # fmt: skip


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        }


async def test_a_version_1_file_upgrades_in_place_keeping_rows_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    assert migrations.migrate_file(path, target=1) == [1]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO events (event_id, kind, job_id, agent_id, tenant_id, created_at, attempt, worker,"
            " decision, reason, model, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [v1_row(n) for n in range(20)],
        )
        # The first cut projected jobs too.
        conn.executemany(
            "INSERT INTO jobs (job_id, agent_id, tenant_id, task_type, description, state)"
            " VALUES (?,?,?,?,?,?)",
            [(f"job-{n}", "agent-a", "t", "plan", f"legacy job {n}", "queued") for n in range(20)],
        )
        before = conn.execute(
            "SELECT seq, event_id, payload, recorded_at FROM events ORDER BY seq"
        ).fetchall()
    assert "row_hash" not in {c[1] for c in sqlite3.connect(path).execute("PRAGMA table_info(events)")}

    store = await LedgerStore.open(path)  # the writer's start migrates
    try:
        await store.insert_events([{"event_id": "new", "kind": "submitted", "job_id": "job-new",
                                    "payload": {"description": "fresh"}}])  # fmt: skip
    finally:
        await store.close()

    with sqlite3.connect(path) as conn:
        after = conn.execute("SELECT seq, event_id, payload, recorded_at FROM events ORDER BY seq").fetchall()
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tenants = conn.execute("SELECT tenant_id, jobs FROM tenants").fetchall()
    assert after[:20] == before and after[20][1] == "new"
    assert versions == list(range(1, migrations.LATEST + 1))
    assert tenants == [("t", 20)]
    assert {"events_no_update", "events_no_delete", "anchors", "checkpoints", "job_search"} <= tables(path)
    report = verify_ledger(path)
    assert report.ok and report.rows == 21, report.detail
    # The backfilled legacy rows are searchable too.
    assert [j["job_id"] for j in await search(path, "legacy job 7")] == ["job-7"]


async def test_a_version_2_chain_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    migrations.migrate_file(path, target=2)
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.executemany(
            "INSERT INTO events (event_id, kind, job_id, agent_id, tenant_id, created_at, attempt, worker,"
            " decision, reason, model, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [v1_row(n) for n in range(5)],
        )
        from ledger.chain import backfill

        conn.execute("BEGIN")
        backfill(conn)
        conn.execute("COMMIT")
        hashes = conn.execute("SELECT row_hash FROM events ORDER BY seq").fetchall()
    assert migrations.migrate_file(path) == list(range(3, migrations.LATEST + 1))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT row_hash FROM events ORDER BY seq").fetchall() == hashes
    assert verify_ledger(path).ok
    assert migrations.migrate_file(path) == []  # idempotent


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    migrations.migrate_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'x')", (migrations.LATEST + 1,))
    with pytest.raises(SchemaTooNew, match="newer"):
        await LedgerStore.open(path)


def test_migration_files_split_into_statements() -> None:
    found = migrations.available()
    assert [m.version for m in found] == list(range(1, migrations.LATEST + 1))
    trigger = [s for s in migrations.statements(found[1].sql) if s.startswith("CREATE TRIGGER")]
    assert len(trigger) == 2 and all(s.endswith("END;") for s in trigger)


def _job(job_id: str, description: str, plan_word: str, tenant: str = "t") -> list[dict[str, Any]]:
    base = {
        "job_id": job_id,
        "agent_id": "agent-a",
        "tenant_id": tenant,
        "created_at": "2026-11-25T10:00:00.000Z",
    }
    output = {"steps": [{"title": f"Drain the {plan_word} pool"}], "notes_for_humans": ["check the backups"]}
    return [
        {**base, "event_id": uuid.uuid4().hex, "kind": "submitted", "payload": {"description": description}},
        {**base, "event_id": uuid.uuid4().hex, "kind": "done", "decision": "EXECUTE",
         "payload": {"output": output}},
    ]  # fmt: skip


async def test_search_finds_a_job_by_a_word_of_its_plan(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(_job("j-1", "Rotate the certificates", "kafka"))
        await store.insert_events(_job("j-2", "Upgrade the database", "postgres", tenant="other"))
    finally:
        await store.close()
    assert [j["job_id"] for j in await search(path, "kafka")] == ["j-1"]
    assert [j["job_id"] for j in await search(path, "database")] == ["j-2"]
    assert {j["job_id"] for j in await search(path, "backups")} == {"j-1", "j-2"}
    assert [j["job_id"] for j in await search(path, "backups", EventFilter(tenant_id="other"))] == ["j-2"]
    assert await search(path, 'kafka" OR "postgres') == []  # user text is never FTS syntax
    exported = [e async for e in export_events(path, EventFilter(kind="done", since="2026-11-25"))]
    assert [e["job_id"] for e in exported] == ["j-1", "j-2"]
    assert [e async for e in export_events(path, EventFilter(since="2026-11-26T00:00:00+00:00"))] == []


async def test_compaction_archives_old_rows_and_the_chain_still_verifies(tmp_path: Path) -> None:
    path, key = tmp_path / "ledger.db", Ed25519PrivateKey.generate()
    store = await LedgerStore.open(path)
    try:
        for n in range(4):
            await store.insert_events(_job(f"old-{n}", "old work", "redis"))
        with sqlite3.connect(path) as conn:
            (cut,) = conn.execute("SELECT max(recorded_at) FROM events").fetchone()
        with pytest.raises(CompactionError):
            compact(path, "2000-01-01", tmp_path / "none.db", key)
        while _now_le(cut):  # the clock has millisecond steps: the next row is recorded after the cut
            pass
        await store.insert_events(_job("new-1", "new work", "nginx"))
    finally:
        await store.close()
    result = compact(path, _after(cut), tmp_path / "archive.db", key)
    assert result.archived_rows == 8 and result.through_seq == 8
    main, archive = verify_ledger(path, key.public_key()), verify_ledger(result.archive, key.public_key())
    assert main.ok and archive.ok, (main.detail, archive.detail)
    assert (main.rows, main.head_seq, archive.rows) == (10, 10, 8)
    assert (await show_job(path, "old-1"))["events"] == []
    assert len((await show_job(result.archive, "old-1"))["events"]) == 2
    # Writing continues from the checkpoint, and the chain stays whole.
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(_job("new-2", "more", "x"))
    finally:
        await store.close()
    assert verify_ledger(path, key.public_key()).rows == 12
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM events")  # the triggers are back


def _now_le(cut: str) -> bool:
    from ledger.chain import now_iso

    return now_iso() <= cut


def _after(cut: str) -> str:
    """A time just after `cut` (ISO text with milliseconds)."""
    from datetime import datetime, timedelta

    at = datetime.fromisoformat(cut.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    return at.isoformat()
