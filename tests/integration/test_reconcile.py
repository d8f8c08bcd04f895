"""Reconciliation against a real Redis: jobs submitted past the retention, never ended, their status gone,
are recorded `lost` once however often it runs; a job whose status is still there, or that ended, is not."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ledger.ledger_writer import LedgerWriter
from ledger.sqlite_store import LedgerStore
from tests.unit.ledger_events import done_event, submitted_event
from worker.keys import LEDGER_GROUP, Keys
from worker.reconcile import find_lost, record_lost
from worker.settings import Settings

pytestmark = pytest.mark.integration

LONG_AGO = "2026-01-01T00:00:00.000Z"


async def test_lost_jobs_are_recorded_once(redis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> None:
    settings = Settings(key_prefix=key_prefix, ledger_path=tmp_path / "ledger.db", result_ttl_s=60)
    keys = Keys(key_prefix)
    store = await LedgerStore.open(settings.ledger_path)
    try:
        await store.insert_events(
            [
                submitted_event("gone-1", created_at=LONG_AGO),
                submitted_event("gone-2", created_at=LONG_AGO),
                submitted_event("still-queued", created_at=LONG_AGO),
                submitted_event("ended", created_at=LONG_AGO),
                done_event("ended"),
                submitted_event("recent"),  # within the retention: not a candidate yet
            ]
        )
        await redis.hset(keys.job("still-queued"), mapping={"state": "queued"})
        assert {j["job_id"] for j in await find_lost(redis, settings)} == {"gone-1", "gone-2"}
        for _ in range(2):  # twice before the writer records them: one event per job all the same
            assert len(await record_lost(redis, settings)) == 2
        writer = LedgerWriter(redis, keys.ledger_stream(), LEDGER_GROUP, "w1", store, block_ms=100)
        assert await writer.drain_once() == 2
        assert await find_lost(redis, settings) == []  # recorded: nothing left to find
        events = await store.events_for_job("gone-1")
        assert [e["kind"] for e in events] == ["submitted", "lost"]
        assert events[-1]["event_id"] == "lost:gone-1" and events[-1]["source"] == "ledger"
        assert (await store.job("gone-1"))["state"] == "lost"
        assert (await store.job("still-queued"))["state"] == "queued"
        assert (await store.job("ended"))["state"] == "done"
    finally:
        await store.close()
