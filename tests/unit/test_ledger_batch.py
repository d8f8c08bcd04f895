"""LedgerStore's one-hop batch writer: a batch gives the same file as its events one at a time, a failing
batch leaves nothing behind, and a cancelled batch cannot interleave with the next one."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from ledger.sqlite_store import LedgerStore
from ledger.verify import verify_ledger
from tests.unit.ledger_events import (
    agent_event,
    agent_output,
    done_event,
    make_event,
    refused_event,
    submitted_event,
)

# Columns that depend on when a batch was committed (recorded_at, and the hashes that cover it).
_TIMED = {"recorded_at", "prev_hash", "row_hash"}


def mixed_events() -> list[dict[str, Any]]:
    """Every projected kind, jobs seen twice in one batch, events without a job, and re-deliveries."""
    events: list[dict[str, Any]] = []
    for i in range(12):
        job = f"job-{i % 5}"
        events.append(submitted_event(job, f"rotate key {i}", request={"context": {"project": "p1"}}))
        events.append(done_event(job, agent_output(f"step é {i}")))
        events.append(refused_event(job, "error_budget_exhausted"))
        events.append(agent_event("revoked", f"agent-{i % 3}", "leaked key"))
        events.append(agent_event("restored", f"agent-{i % 3}", "fixed"))
        events.append(make_event("suspended", job, payload={"policy_version": "pv-2"}))
    events.append(dict(events[0]))  # re-delivered inside the batch
    events.append(dict(events[7]))
    return events


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        out = {}
        for table in ("events", "jobs", "tenants", "projects", "agents"):
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            out[table] = [tuple(v for k, v in zip(r.keys(), r, strict=True) if k not in _TIMED) for r in rows]
        out["job_search"] = [tuple(r) for r in conn.execute("SELECT rowid, * FROM job_search ORDER BY rowid")]
        # The index itself, not only its rows: description, plan, description and notes, a number.
        for words in ('"rotate"', '"rollback"', '"rotate" "scripted"', '"11"'):
            sql = "SELECT rowid FROM job_search WHERE job_search MATCH ? ORDER BY rowid"
            found = conn.execute(sql, (words,))
            out[f"match {words}"] = [tuple(r) for r in found]
        return out
    finally:
        conn.close()


async def test_one_batch_equals_one_event_at_a_time(tmp_path: Path) -> None:
    events = mixed_events()
    batched = await LedgerStore.open(tmp_path / "batched.db", policy_version="pv-1")
    single = await LedgerStore.open(tmp_path / "single.db", policy_version="pv-1")
    try:
        assert await batched.insert_events(events) == len(events) - 2
        assert await batched.insert_events(events[:10]) == 0
        counts = [await single.insert_events([event]) for event in events]
        assert sum(counts) == len(events) - 2
        assert (await batched.head())[0] == (await single.head())[0] == len(events) - 2
    finally:
        await batched.close()
        await single.close()
    dumped = table_dump(tmp_path / "batched.db")
    assert dumped == table_dump(tmp_path / "single.db")
    assert len(dumped["agents"]) == 36 and len(dumped["job_search"]) == 5
    assert (
        len(dumped['match "rotate" "scripted"']) == 5
    )  # description (submitted) and notes (done) of one row
    assert len(dumped['match "rollback"']) == 5  # a word of a step: the plan is indexed
    assert verify_ledger(tmp_path / "batched.db").ok
    assert verify_ledger(tmp_path / "single.db").ok


async def test_failing_batch_writes_nothing(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    try:
        await store.insert_events([make_event("submitted")])
        before = await store.head()
        bad = make_event("done", job_id="job-2", attempt=["not", "a", "column", "value"])
        good = [make_event("submitted", job_id=f"job-{i}") for i in range(3, 8)]
        try:
            await store.insert_events([*good, bad])
        except sqlite3.Error:  # (the list cannot be bound to a parameter)
            pass
        else:
            raise AssertionError("the bad batch was accepted")
        assert await store.head() == before
        assert await store.job("job-3") is None
        # The connection is not left inside the failed transaction.
        assert await store.insert_events(good) == 5
        assert await store.count_events() == 6
    finally:
        await store.close()
    assert verify_ledger(tmp_path / "ledger.db").ok


async def test_cancelled_batch_does_not_overlap_the_next(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    try:
        big = [
            make_event("submitted", job_id=f"job-{i}", payload={"description": "x" * 500})
            for i in range(3000)
        ]
        task = asyncio.create_task(store.insert_events(big))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # The cancelled batch still runs to COMMIT on the writer thread; this one queues behind it.
        assert await store.insert_events([make_event("submitted", job_id="after")]) == 1
        assert await store.count_events() in (1, 3001)
    finally:
        await store.close()
    assert verify_ledger(tmp_path / "ledger.db").ok


def test_statement_batch_keeps_the_order_of_interleaved_statements() -> None:
    """Runs of one statement become one executemany; a statement between two runs still sees the first."""
    from ledger.projections import StatementBatch

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    upsert = "INSERT INTO t VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
    double = "UPDATE t SET v = v * 2 WHERE k = ?"
    batch = StatementBatch()
    for statement in [
        (upsert, ("a", 1)),
        (upsert, ("b", 2)),
        (double, ("a",)),
        (upsert, ("a", 5)),
        (double, ("a",)),
    ]:
        batch.execute(*statement)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)  # held until flushed
    batch.flush(conn)
    assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 10), ("b", 2)]
