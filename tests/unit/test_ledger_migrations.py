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
from ledger.projections import search_text
from ledger.queries import EventFilter, export_events, search, show_job
from ledger.sqlite_store import LedgerStore
from ledger.verify import verify_ledger
from tests.unit.ledger_events import agent_output, job_events


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


def _job(job_id: str, description: str, plan_for: str, tenant: str = "t") -> list[dict[str, Any]]:
    """A job's submitted and done events; its plan is the scripted plan for `plan_for`."""
    return job_events(job_id, description, plan_for, tenant_id=tenant, created_at="2026-11-25T10:00:00.000Z")


def _search_columns(path: Path, job_id: str) -> tuple[str, str, str]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT description, plan, notes FROM job_search WHERE job_id = ?", (job_id,)
        ).fetchone()


async def test_search_finds_a_job_by_a_word_of_its_plan(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(_job("j-1", "Rotate the certificates", "Restart the kafka brokers"))
        await store.insert_events(_job("j-2", "Upgrade the database", "Fail over postgres", tenant="other"))
    finally:
        await store.close()
    # "rollback" is a word of the scripted plan's last step only (not of a description or the notes).
    description, plan, notes = _search_columns(path, "j-1")
    assert "rollback" in plan and "rollback" not in f"{description} {notes}"
    assert '"title"' not in plan and "Gather read-only context" in plan  # the steps' text, not JSON
    assert {j["job_id"] for j in await search(path, "rollback")} == {"j-1", "j-2"}
    assert [j["job_id"] for j in await search(path, "rollback", EventFilter(tenant_id="other"))] == ["j-2"]
    assert [j["job_id"] for j in await search(path, "kafka")] == ["j-1"]
    assert [j["job_id"] for j in await search(path, "database")] == ["j-2"]
    assert await search(path, "title") == []  # the steps' field names are not words of the plan
    assert await search(path, 'kafka" OR "postgres') == []  # user text is never FTS syntax
    exported = [e async for e in export_events(path, EventFilter(kind="done", since="2026-11-25"))]
    assert [e["job_id"] for e in exported] == ["j-1", "j-2"]
    assert [e async for e in export_events(path, EventFilter(since="2026-11-26T00:00:00+00:00"))] == []


def test_the_plan_is_indexed_as_its_text() -> None:
    plan = agent_output("Restart the kafka brokers").model_dump(mode="json")["plan"]
    # Every text of every step, in order; no field names, no step numbers.
    texts = [
        text
        for step in plan
        for text in (step["title"], step["description"], *step["actions"], *step["risks"])
    ]
    assert search_text(plan).splitlines() == texts
    assert search_text({"a": [1, "x", {"b": "y", "c": None}, ["p", 2]], "d": "", "e": []}) == "x\ny\np"
    assert search_text("notes") == "notes" and search_text(None) == ""


async def test_a_version_4_file_gets_its_plans_indexed(tmp_path: Path) -> None:
    """Migration 5 rebuilds the search index of a file whose plans were never indexed, archived jobs too."""
    path, key = tmp_path / "ledger.db", Ed25519PrivateKey.generate()
    old = _job("old-1", "Rotate the certificates", "Restart the kafka brokers")
    new = _job("new-1", "Upgrade the database", "Fail over postgres")
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(old)
        with sqlite3.connect(path) as conn:
            (cut,) = conn.execute("SELECT max(recorded_at) FROM events").fetchone()
        while _now_le(cut):  # the clock has millisecond steps: the next row is recorded after the cut
            pass
        await store.insert_events(new)
    finally:
        await store.close()
    compact(path, _after(cut), tmp_path / "archive.db", key)  # old-1's events leave the file
    # The file as version 4 left it: its writer indexed `$.output.steps`, which an AgentOutput never has.
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("UPDATE job_search SET plan = ''")
        conn.execute("DELETE FROM schema_migrations WHERE version > 4")
        conn.execute("PRAGMA user_version = 4")
    assert await search(path, "rollback") == []

    assert migrations.migrate_file(path) == list(range(5, migrations.LATEST + 1))
    assert {j["job_id"] for j in await search(path, "rollback")} == {"old-1", "new-1"}
    assert [j["job_id"] for j in await search(path, "kafka")] == ["old-1"]
    assert [j["job_id"] for j in await search(path, "database")] == ["new-1"]
    assert verify_ledger(path, key.public_key()).ok
    # The rebuilt rows are the rows the writer now writes for the same events.
    fresh = tmp_path / "fresh.db"
    store = await LedgerStore.open(fresh)
    try:
        await store.insert_events([*old, *new])
    finally:
        await store.close()
    for job_id in ("old-1", "new-1"):
        assert _search_columns(path, job_id) == _search_columns(fresh, job_id)


async def test_compaction_archives_old_rows_and_the_chain_still_verifies(tmp_path: Path) -> None:
    path, key = tmp_path / "ledger.db", Ed25519PrivateKey.generate()
    store = await LedgerStore.open(path)
    try:
        for n in range(4):
            await store.insert_events(_job(f"old-{n}", "old work", "Flush the redis caches"))
        with sqlite3.connect(path) as conn:
            (cut,) = conn.execute("SELECT max(recorded_at) FROM events").fetchone()
        with pytest.raises(CompactionError):
            compact(path, "2000-01-01", tmp_path / "none.db", key)
        while _now_le(cut):  # the clock has millisecond steps: the next row is recorded after the cut
            pass
        await store.insert_events(_job("new-1", "new work", "Reload nginx"))
    finally:
        await store.close()
    result = compact(path, _after(cut), tmp_path / "archive.db", key)
    assert result.archived_rows == 8 and result.through_seq == 8
    main, archive = verify_ledger(path, key.public_key()), verify_ledger(result.archive, key.public_key())
    assert main.ok and archive.ok, (main.detail, archive.detail)
    assert (main.rows, main.head_seq, archive.rows) == (10, 10, 8)
    assert main.warnings == [] and archive.warnings == []  # the archive is sealed like a ledger
    assert {"events_no_update", "events_no_delete", "schema_migrations"} <= tables(result.archive)
    assert (await show_job(path, "old-1"))["events"] == []
    assert len((await show_job(result.archive, "old-1"))["events"]) == 2
    # Writing continues from the checkpoint, and the chain stays whole.
    store = await LedgerStore.open(path)
    try:
        await store.insert_events(_job("new-2", "more", "Rotate the logs"))
    finally:
        await store.close()
    assert verify_ledger(path, key.public_key()).rows == 12
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM events")  # the triggers are back


def _now_le(cut: str) -> bool:
    from plangate_base.clock import now_iso

    return now_iso() <= cut


def _after(cut: str) -> str:
    """A time just after `cut` (ISO text with milliseconds)."""
    from datetime import datetime, timedelta

    at = datetime.fromisoformat(cut.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    return at.isoformat()
