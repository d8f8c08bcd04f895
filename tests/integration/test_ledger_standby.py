"""One active ledger writer per ledger, standbys, re-claiming a dead writer's entries, anchors in Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.anchors import Anchorer, fetch
from ledger.ledger_writer import LedgerWriter
from ledger.sqlite_store import LedgerStore
from ledger.verify import verify_ledger
from ledger.writer_lock import WriterLock
from tests.eventually import eventually
from tests.integration.test_ledger_writer import GROUP, make_event

pytestmark = pytest.mark.integration


class Ledger:
    """Writers on one stream and one ledger file, each with its own store (as separate processes would)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, path: Path) -> None:
        self.redis, self.path = redis, path
        self.stream, self.lock_key = f"{prefix}ledger", f"{prefix}ledger:writer"
        self.anchor_key = f"{prefix}ledger:anchor"
        self.head_key = f"{prefix}ledger:head"
        self.key = Ed25519PrivateKey.generate()
        self.tasks: list[tuple[LedgerWriter, asyncio.Task[None]]] = []

    async def start(self, consumer: str, ttl_s: float = 1.0) -> LedgerWriter:
        store = await LedgerStore.open(self.path)
        writer = LedgerWriter(
            self.redis,
            self.stream,
            GROUP,
            consumer,
            store,
            block_ms=100,
            lock=WriterLock(self.redis, self.lock_key, consumer, ttl_s=ttl_s),
            anchorer=Anchorer(store, self.key, self.redis, self.anchor_key, interval_s=0.1),
            head_key=self.head_key,
        )
        self.tasks.append((writer, asyncio.create_task(writer.run())))
        return writer

    async def stop(self, writer: LedgerWriter) -> None:
        for entry in [t for t in self.tasks if t[0] is writer]:
            writer.stop()
            await asyncio.wait_for(entry[1], timeout=5)
            await writer.store.close()
            self.tasks.remove(entry)

    async def add(self, count: int) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in (make_event() for _ in range(count)):
                pipe.xadd(self.stream, {"e": json.dumps(event)})
            return await pipe.execute()

    async def recorded(self) -> int:
        store = await LedgerStore.open(self.path)
        try:
            return await store.count_events()
        finally:
            await store.close()


@pytest.fixture
async def ledger(redis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> AsyncIterator[Ledger]:
    env = Ledger(redis, key_prefix, tmp_path / "ledger.db")
    yield env
    for writer, _task in list(env.tasks):
        await env.stop(writer)


async def test_second_writer_waits_as_standby_and_takes_over(ledger: Ledger) -> None:
    first = await ledger.start("w1")
    await eventually(lambda: first.active, what="first.active")
    second = await ledger.start("w2")
    await ledger.add(50)
    await eventually(lambda: first.processed == 50, what="first.processed == 50")
    assert not second.active and second.processed == 0

    await ledger.stop(first)  # releases the lock: the standby need not wait for the TTL
    await eventually(lambda: second.active, what="second.active")
    await ledger.add(30)
    await eventually(lambda: second.processed == 30, what="second.processed == 30")
    assert await ledger.recorded() == 80
    assert verify_ledger(ledger.path, ledger.key.public_key()).ok


async def test_standby_takes_over_when_the_active_writer_stops_renewing(ledger: Ledger) -> None:
    # A writer that died holding the lock: its key stays until the TTL runs out.
    await ledger.redis.set(ledger.lock_key, "dead-writer:x", px=800)
    writer = await ledger.start("w2")
    await ledger.add(10)
    await eventually(lambda: writer.processed == 10, what="writer.processed == 10")
    assert await ledger.redis.get(ledger.lock_key) == writer.lock.token


async def test_entries_a_dead_writer_left_pending_are_claimed(ledger: Ledger) -> None:
    await ledger.add(25)
    await ledger.redis.xgroup_create(ledger.stream, GROUP, id="0", mkstream=True)
    await ledger.redis.xreadgroup(GROUP, "dead", {ledger.stream: ">"}, count=20)  # read, never acked
    writer = await ledger.start("w2")
    await eventually(lambda: writer.processed == 25, what="writer.processed == 25")
    assert writer.claimed == 20
    assert (await ledger.redis.xpending(ledger.stream, GROUP))["pending"] == 0
    assert await ledger.recorded() == 25


async def test_the_active_writer_publishes_signed_anchors(ledger: Ledger) -> None:
    writer = await ledger.start("w1")
    await ledger.add(40)
    await eventually(lambda: writer.processed == 40, what="writer.processed == 40")

    async def anchored() -> bool:
        anchor = await fetch(ledger.redis, ledger.anchor_key)
        return anchor is not None and anchor["row_count"] == 40

    await eventually(anchored, what="an anchor of 40 rows")
    anchor = await fetch(ledger.redis, ledger.anchor_key)
    report = verify_ledger(ledger.path, ledger.key.public_key(), [anchor])
    assert report.ok and report.anchors_checked >= 2, report.detail  # the file's own and Redis's
    assert report.latest_anchor is not None and report.latest_anchor["head_seq"] == 40
