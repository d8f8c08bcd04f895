"""LedgerStore against a real SQLite file: batches, idempotence, the jobs projection, PRAGMAs, two writers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from ledger.errors import LedgerNotFound, SchemaTooNew
from ledger.events import decode_entry
from ledger.migrations import LATEST
from ledger.queries import show_job
from ledger.sqlite_store import LedgerStore
from plangate_base.vocabulary import CancelReason, JobState
from tests.unit.ledger_events import (
    agent_output,
    done_event,
    failed_event,
    make_event,
    refused_event,
    submitted_event,
)
from worker.outcome import Outcome

EVENT_KEYS = {
    "event_id",
    "kind",
    "job_id",
    "agent_id",
    "tenant_id",
    "created_at",
    "attempt",
    "worker",
    "decision",
    "reason",
    "model",
    "payload",
}


@pytest.fixture
async def store(tmp_path: Path):
    s = await LedgerStore.open(tmp_path / "sub" / "ledger.db")
    yield s
    await s.close()


async def test_insert_batch_returns_new_count(store: LedgerStore) -> None:
    events = [make_event("submitted", job_id=f"job-{i}") for i in range(50)]
    assert await store.insert_events(events) == 50
    assert await store.count_events() == 50
    assert await store.count_events("submitted") == 50
    assert await store.count_events("done") == 0
    assert await store.insert_events([]) == 0


async def test_reinsert_is_idempotent(store: LedgerStore) -> None:
    events = [make_event("submitted", job_id=f"job-{i}") for i in range(10)]
    assert await store.insert_events(events) == 10
    assert await store.insert_events(events) == 0
    assert await store.count_events() == 10
    # A duplicate inside one batch counts once too.
    fresh = make_event("submitted", job_id="job-x")
    assert await store.insert_events([fresh, dict(fresh)]) == 1
    assert await store.count_events() == 11


async def test_redelivered_terminal_event_does_not_reproject(store: LedgerStore) -> None:
    done = done_event()
    await store.insert_events([submitted_event(), done])
    # A different terminal event later wins; re-delivering the first one must not undo that.
    cancelled = Outcome.error(JobState.CANCELLED, CancelReason.BY_SUBMITTER, "cancelled while queued")
    await store.insert_events([make_event(cancelled.kind, **cancelled.event_fields())])
    await store.insert_events([done])
    job = await store.job("job-1")
    assert job is not None
    assert job["state"] == "cancelled"


async def test_projection_submitted_then_done(store: LedgerStore) -> None:
    submitted = submitted_event(description="plan the migration", request={"constraints": ["no downtime"]})
    await store.insert_events([submitted])
    job = await store.job("job-1")
    assert job is not None
    assert job["state"] == "queued"
    assert job["task_type"] == "plan"
    assert job["description"] == "plan the migration"
    assert job["submitted_at"] == submitted["created_at"]
    assert job["finished_at"] is None

    done = done_event(model="m-1", created_at="2026-11-25T13:37:00.000Z")
    await store.insert_events([done])
    job = await store.job("job-1")
    assert job is not None
    assert job["state"] == "done"
    assert job["decision"] == "EXECUTE"
    assert job["model"] == "m-1"
    assert job["finished_at"] == "2026-11-25T13:37:00.000Z"
    assert job["output"] == done["payload"]
    assert job["output"]["output"]["plan"][0]["title"] == "Gather read-only context"
    assert job["task_type"] == "plan"  # kept from the submitted event


async def test_projection_refused_carries_reason(store: LedgerStore) -> None:
    await store.insert_events(
        [
            submitted_event("j-r"),
            refused_event("j-r", "revoked"),
            submitted_event("j-q"),
            # No top-level reason: the refusal code in the payload is used.
            refused_event("j-q", "quota_exceeded", reason=None),
            submitted_event("j-f"),
            failed_event("j-f", "llm_unavailable", reason=None),  # and a failure's error type
        ]
    )
    refused = await store.job("j-r")
    assert refused is not None
    assert (refused["state"], refused["reason"]) == ("refused", "revoked")
    assert refused["output"] == {"refusal": {"code": "revoked", "reason": "refused: revoked"}}
    quota = await store.job("j-q")
    assert quota is not None
    assert (quota["state"], quota["reason"]) == ("refused", "quota_exceeded")
    failed = await store.job("j-f")
    assert failed is not None
    assert (failed["state"], failed["reason"]) == ("failed", "llm_unavailable")


async def test_projection_is_order_independent(store: LedgerStore) -> None:
    await store.insert_events([failed_event(error_type="llm_timeout")])
    await store.insert_events([submitted_event(request={"task_type": "review"})])
    job = await store.job("job-1")
    assert job is not None
    assert job["state"] == "failed"
    assert job["reason"] == "llm_timeout"
    assert job["task_type"] == "review"


async def test_unknown_job_is_none(store: LedgerStore) -> None:
    assert await store.job("nope") is None
    assert await store.events_for_job("nope") == []


async def test_events_for_job_in_seq_order(store: LedgerStore) -> None:
    kinds = ["submitted", "started", "done"]
    for kind in kinds:
        await store.insert_events([make_event(kind), make_event("submitted", job_id="other")])
    events = await store.events_for_job("job-1")
    assert [e["kind"] for e in events] == kinds
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert all(isinstance(e["payload"], dict) for e in events)


async def test_show_job_shape(store: LedgerStore) -> None:
    submitted = submitted_event()
    done = done_event(output=agent_output(behaviour="scripted-low-confidence"), model="m")
    await store.insert_events([submitted, done])

    shown = await show_job(store.path, "job-1")

    assert set(shown) == {"job_id", "events"}
    assert shown["job_id"] == "job-1"
    assert [e["event_id"] for e in shown["events"]] == [submitted["event_id"], done["event_id"]]
    for event in shown["events"]:
        assert EVENT_KEYS <= set(event)
    assert shown["events"][1]["payload"] == done["payload"]
    assert shown["events"][1]["decision"] == "ESCALATE"
    assert shown["events"][0]["recorded_at"].endswith("Z")


async def test_show_job_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFound):
        await show_job(tmp_path / "absent.db", "job-1")
    assert not (tmp_path / "absent.db").exists()


async def test_pragmas_wal_full_and_version(store: LedgerStore) -> None:
    assert await store.pragma("journal_mode") == "wal"
    assert await store.pragma("synchronous") == 2  # FULL
    assert await store.pragma("busy_timeout") == 10_000
    assert await store.pragma("user_version") == LATEST
    # WAL is a property of the file: a plain connection sees it too.
    with sqlite3.connect(store.path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as plain:
        plain.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNew):
        await LedgerStore.open(path)


async def test_failed_batch_is_rolled_back(store: LedgerStore) -> None:
    good = make_event("submitted", job_id="j-good")
    bad = make_event("submitted", job_id="j-bad", worker={"not": "a string"})
    with pytest.raises(sqlite3.Error):
        await store.insert_events([good, bad])
    assert await store.count_events() == 0
    assert await store.job("j-good") is None
    # The connection is usable afterwards.
    assert await store.insert_events([good]) == 1


async def test_two_stores_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = await LedgerStore.open(path), await LedgerStore.open(path)
    try:

        async def write(store: LedgerStore, tag: str) -> int:
            total = 0
            for batch in range(40):
                events = [make_event("submitted", job_id=f"{tag}-{batch}-{i}") for i in range(25)]
                total += await store.insert_events(events)
            return total

        counts = await asyncio.gather(write(first, "a"), write(second, "b"))
        assert counts == [1000, 1000]
        assert await first.count_events() == 2000
        assert await second.count_events() == 2000
    finally:
        await first.close()
        await second.close()


def test_an_agent_event_needs_no_job() -> None:
    event, found = decode_entry(
        "1764077760123-4", {"e": '{"event_id": "x", "kind": "revoked", "agent_id": "a"}'}
    )
    assert found is None and event["kind"] == "revoked" and event["job_id"] is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"e": '{"kind": "done"}'}, "invalid_event"),
    ],
)
def test_decode_entry_needs_an_event_id(fields: dict[str, str], problem: str) -> None:
    assert decode_entry("1-0", fields)[1] == problem


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "missing_field"),
        ({"e": "{not json"}, "invalid_json"),
        ({"e": "[1, 2]"}, "not_an_object"),
        ({"e": '{"event_id": "x", "job_id": "j"}'}, "invalid_event"),
        ({"e": '{"event_id": "x", "kind": "revoked", "job_id": 7}'}, "invalid_event"),
        ({"e": '{"event_id": "x", "kind": "done", "job_id": "j", "attempt": "one"}'}, "invalid_event"),
        ({"e": '{"event_id": "x", "kind": "done", "job_id": "j", "worker": 5}'}, "invalid_event"),
        ({"e": '{"event_id": "x", "kind": "malformed", "job_id": "j"}'}, "invalid_event"),
    ],
)
def test_decode_entry_malformed(fields: dict[str, str], problem: str) -> None:
    event, found = decode_entry("1764077760123-4", fields)
    assert found == problem
    assert event["kind"] == "malformed"
    assert event["event_id"] == "malformed:1764077760123-4"
    assert event["created_at"] == "2025-11-25T13:36:00.123Z"
    assert event["payload"]["stream_id"] == "1764077760123-4"


def test_decode_entry_valid() -> None:
    wire = done_event()
    event, problem = decode_entry("1-0", {"e": json.dumps(wire)})
    assert problem is None
    assert event == wire
