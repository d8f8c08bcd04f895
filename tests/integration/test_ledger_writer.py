"""LedgerWriter against the real Redis (db 9, own key prefix) and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ledger.ledger_writer import LedgerWriter
from ledger.sqlite_store import LedgerStore
from tests.eventually import eventually
from tests.unit.ledger_events import submitted_event

pytestmark = pytest.mark.integration

GROUP = "ledger-writer"


@dataclass
class Env:
    """One test's Redis client, its own stream key, and a fresh ledger file."""

    redis: aioredis.Redis
    stream: str
    store: LedgerStore

    def writer(self, consumer: str = "w1", **kwargs: Any) -> LedgerWriter:
        kwargs.setdefault("block_ms", 200)  # keeps teardown (stop) quick
        return LedgerWriter(self.redis, self.stream, GROUP, consumer, self.store, **kwargs)


@pytest.fixture
async def env(redis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> AsyncIterator[Env]:
    """The shared real Redis (its own prefix, cleaned up by the fixture) and a fresh ledger file."""
    store = await LedgerStore.open(tmp_path / "ledger.db")
    try:
        yield Env(redis, f"{key_prefix}ledger", store)
    finally:
        await store.close()


def make_event() -> dict[str, Any]:
    """The submitted event of a job of its own, as the client builds it."""
    return submitted_event(uuid.uuid4().hex)


async def xadd_events(env: Env, events: list[dict[str, Any]]) -> list[str]:
    async with env.redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(env.stream, {"e": json.dumps(event)})
        return await pipe.execute()


@asynccontextmanager
async def running(writer: LedgerWriter) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        writer.stop()
        await asyncio.wait_for(task, timeout=5)


def fail_commit(env: Env, monkeypatch: pytest.MonkeyPatch, on_call: int, error: Exception) -> None:
    """Make the store's `on_call`-th batch (counting from 1) raise `error`; the others commit."""
    real_insert = env.store.insert_prepared
    calls = 0

    async def insert(prepare: Callable[[], Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls == on_call:
            raise error
        return await real_insert(prepare)

    monkeypatch.setattr(env.store, "insert_prepared", insert)


async def pending_count(env: Env) -> int:
    return (await env.redis.xpending(env.stream, GROUP))["pending"]


async def test_every_event_recorded_once_then_acked_and_deleted(env: Env) -> None:
    events = [make_event() for _ in range(500)]
    writer = env.writer(batch_size=200)
    async with running(writer):
        await xadd_events(env, events)

        async def all_recorded() -> bool:
            return await env.store.count_events() >= 500

        await eventually(all_recorded, what="500 events in the store")
        await eventually(lambda: writer.processed == 500, what="writer.processed == 500")
    assert await env.store.count_events() == 500
    assert writer.written == 500
    assert writer.malformed == 0
    with sqlite3.connect(env.store.path) as plain:
        recorded = {row[0] for row in plain.execute("SELECT event_id FROM events")}
    assert recorded == {e["event_id"] for e in events}
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0


async def test_redelivered_event_is_not_duplicated(env: Env) -> None:
    event = make_event()
    writer = env.writer()
    async with running(writer):
        await xadd_events(env, [event])
        await eventually(lambda: writer.processed == 1, what="writer.processed == 1")
        await xadd_events(env, [event, make_event()])
        await eventually(lambda: writer.processed == 3, what="writer.processed == 3")
    assert await env.store.count_events() == 2
    assert writer.written == 2
    assert len(await env.store.events_for_job(event["job_id"])) == 1
    assert await env.redis.xlen(env.stream) == 0


async def test_malformed_entries_are_recorded_and_writer_continues(env: Env) -> None:
    writer = env.writer()
    good = make_event()
    async with running(writer):
        bad_ids = [
            await env.redis.xadd(env.stream, {"x": "no e field"}),
            await env.redis.xadd(env.stream, {"e": "{not json"}),
            await env.redis.xadd(env.stream, {"e": json.dumps({"event_id": "x", "job_id": "j"})}),  # no kind
        ]
        await xadd_events(env, [good])
        await eventually(lambda: writer.processed == 4, what="writer.processed == 4")
    assert writer.malformed == 3
    assert await env.store.count_events("malformed") == 3
    assert await env.store.count_events() == 4
    shown = await env.store.events_for_job(good["job_id"])
    assert [e["event_id"] for e in shown] == [good["event_id"]]
    with sqlite3.connect(env.store.path) as plain:
        rows = plain.execute("SELECT event_id, payload FROM events WHERE kind = 'malformed' ORDER BY seq")
        malformed = [(event_id, json.loads(payload)) for event_id, payload in rows]
    assert [event_id for event_id, _ in malformed] == [f"malformed:{i}" for i in bad_ids]
    assert malformed[1][1]["raw"] == "{not json"
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0


async def test_pending_entries_of_a_crashed_writer_are_committed(env: Env) -> None:
    events = [make_event() for _ in range(20)]
    await xadd_events(env, events)
    # A writer that read its batch and died before committing: entries delivered, never acked.
    await env.redis.xgroup_create(env.stream, GROUP, id="0", mkstream=True)
    delivered = await env.redis.xreadgroup(GROUP, "w1", {env.stream: ">"}, count=20)
    assert len(delivered[0][1]) == 20
    assert await pending_count(env) == 20
    later = [make_event() for _ in range(5)]
    await xadd_events(env, later)

    writer = env.writer(consumer="w1", batch_size=7)
    async with running(writer):
        await eventually(lambda: writer.processed == 25, what="writer.processed == 25")
    assert await env.store.count_events() == 25
    assert writer.written == 25
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0


async def test_sqlite_failure_leaves_entries_unacked_until_committed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_event() for _ in range(30)]
    await xadd_events(env, events)
    writer = env.writer()

    async def broken(prepare: Callable[[], Any]) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(env.store, "insert_prepared", broken)
    with pytest.raises(sqlite3.OperationalError):
        await writer.drain_once()
    assert await pending_count(env) == 30  # read, not acked
    assert await env.redis.xlen(env.stream) == 30  # nor deleted

    monkeypatch.undo()
    assert await writer.drain_once() == 30
    assert await env.store.count_events() == 30
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0
    assert await writer.drain_once() == 0


async def test_run_retries_after_sqlite_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_commit(env, monkeypatch, on_call=1, error=sqlite3.OperationalError("database is locked"))
    writer = env.writer()
    await xadd_events(env, [make_event() for _ in range(10)])
    async with running(writer):
        await eventually(lambda: writer.processed == 10, what="writer.processed == 10")
    assert writer.errors == 1
    assert await env.store.count_events() == 10
    assert await pending_count(env) == 0


async def test_stop_ends_run_promptly(env: Env) -> None:
    writer = env.writer(block_ms=300)
    task = asyncio.create_task(writer.run())

    async def group_exists() -> bool:
        return await env.redis.exists(env.stream) == 1

    await eventually(group_exists, what="the stream and its group")
    started = time.monotonic()
    writer.stop()
    await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - started < 1.0


async def test_unreachable_redis_backs_off_and_still_stops(tmp_path: Path) -> None:
    store = await LedgerStore.open(tmp_path / "ledger.db")
    dead = aioredis.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.2)
    writer = LedgerWriter(dead, "pgtest-dead:ledger", GROUP, "w1", store, block_ms=100)
    try:
        task = asyncio.create_task(writer.run())
        await eventually(lambda: writer.errors >= 2, what="two errors of the writer")
        writer.stop()
        await asyncio.wait_for(task, timeout=2)
    finally:
        await dead.aclose()
        await store.close()
    assert writer.written == 0


async def test_drain_once_batches_and_returns_new_count(env: Env) -> None:
    await xadd_events(env, [make_event() for _ in range(450)])
    writer = env.writer(batch_size=200)
    assert await writer.drain_once() == 450
    assert writer.processed == 450
    assert await writer.drain_once() == 0
    assert await env.redis.xlen(env.stream) == 0


async def test_backlog_next_batch_is_read_while_the_previous_one_commits(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-ahead: during the first batch's commit the second batch is already read (pending), and
    every entry still ends up recorded once, acked and deleted."""
    await xadd_events(env, [make_event() for _ in range(35)])
    writer = env.writer(batch_size=10)
    real_insert = env.store.insert_prepared
    pending_during_first_commit: list[int] = []

    async def observed(prepare: Callable[[], Any]) -> Any:
        if not pending_during_first_commit:
            # The read-ahead runs beside this call; wait (with a deadline) until it has read batch 2.
            await eventually(
                lambda: _pending_at_least(env, 20), timeout_s=5, what="the read-ahead of batch 2"
            )
            pending_during_first_commit.append(await pending_count(env))
        return await real_insert(prepare)

    monkeypatch.setattr(env.store, "insert_prepared", observed)
    assert await writer.drain_once() == 35
    assert pending_during_first_commit == [20]
    assert await env.store.count_events() == 35
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0


async def _pending_at_least(env: Env, count: int) -> bool:
    return await pending_count(env) >= count


async def test_failure_mid_backlog_loses_and_repeats_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit fails while a read-ahead batch and a deferred ack are in flight: the retry records every
    entry exactly once and leaves the stream empty."""
    events = [make_event() for _ in range(47)]
    await xadd_events(env, events)
    writer = env.writer(batch_size=10)
    fail_commit(env, monkeypatch, on_call=3, error=sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(sqlite3.OperationalError):
        await writer.drain_once()
    assert await env.store.count_events() == 20
    # Batch 2's deferred ack went out beside the failed commit; batch 3 and the read-ahead batch 4 wait.
    assert await env.redis.xlen(env.stream) == 27
    assert await pending_count(env) == 20
    assert await writer.drain_once() == 27
    assert await env.store.count_events() == 47
    recorded = {row["event_id"] for row in await _all_events(env)}
    assert recorded == {event["event_id"] for event in events}
    assert await pending_count(env) == 0
    assert await env.redis.xlen(env.stream) == 0


async def _all_events(env: Env) -> list[dict[str, Any]]:
    conn = sqlite3.connect(env.store.path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT event_id FROM events")]
    finally:
        conn.close()
