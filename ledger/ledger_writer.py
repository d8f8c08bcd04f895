"""The ledger writer: drains the ledger stream into SQLite in batches, acknowledging only after commit.

One writer is active per ledger (a TTL lock in Redis); others wait as standby and take over when the
active one stops renewing. The active writer re-claims entries a dead writer left pending (XAUTOCLAIM)
and signs the chain head periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ledger import chain
from ledger.anchors import Anchorer, own_signed_head
from ledger.errors import LedgerDiverged
from ledger.events import decode_entry
from ledger.sqlite_store import Head, LedgerStore
from ledger.tree_store import TreeError
from ledger.writer_lock import WriterLock
from plangate_base.logs import get_logger

Entry = tuple[str, dict[str, str] | None]

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class LedgerWriter:
    """Consumes the ledger stream as one member of a consumer group and records each entry exactly once."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream_key: str,
        group: str,
        consumer: str,
        store: LedgerStore,
        batch_size: int = 1000,
        batch_delay_s: float = 0.05,
        block_ms: int = 1000,
        *,
        lock: WriterLock | None = None,
        anchorer: Anchorer | None = None,
        claim_idle_s: float = 30.0,
        head_key: str | None = None,
        reconciler: Callable[[], Awaitable[int]] | None = None,
        reconcile_interval_s: float = 300.0,
    ) -> None:
        if batch_size < 1 or block_ms < 1:
            raise ValueError("batch_size and block_ms must be at least 1")
        # Without a lock every writer is active (tests, a single process); with one, only its holder.
        self.lock = lock
        self.anchorer = anchorer
        self.claim_idle_ms = max(1, int(claim_idle_s * 1000))
        self.active = lock is None
        self.claimed = 0  # entries re-claimed from other (dead) consumers
        self.redis = redis
        self.stream_key = stream_key
        self.group = group
        self.consumer = consumer
        self.store = store
        self.batch_size = batch_size
        self.batch_delay_s = batch_delay_s
        self.block_ms = block_ms
        self.written = 0  # events newly committed to SQLite
        self.processed = 0  # stream entries committed, acked and deleted (re-deliveries included)
        self.malformed = 0  # entries recorded as kind "malformed"
        self.errors = 0  # failed steps (Redis or SQLite), each followed by a backoff and a retry
        # With head_key (a Redis key) the writer guards its head: it publishes the head it committed there
        # with each ack, extends and signs only that head, and on taking over adopts the file's head only
        # when it is the published head (plus entries still pending), or the head its key last signed.
        self.head_key = head_key
        self.diverged: LedgerDiverged | TreeError | None = None  # set: the writer stopped writing
        # The periodic reconciliation with Redis (the queue side's: it owns the status keys); returns how
        # many jobs it found lost (and recorded as `lost` on the stream).
        self.reconciler = reconciler
        self.reconcile_interval_s = reconcile_interval_s
        self.lost = 0
        self._next_reconcile = time.monotonic() + reconcile_interval_s
        self._stop = asyncio.Event()
        self._group_ready = False
        # Our own pending entries (read before a crash or a failed commit) are re-read before new ones.
        self._pending_first = True
        self._claim_min_idle_ms: int | None = None  # set: claim others' pending entries idle this long
        self._next_claim = 0.0
        self._next_renew = 0.0
        # Pipelining while a backlog drains: the next batch is read (and decoded) while SQLite commits
        # this one, and this one's XACK/XDEL is sent while SQLite commits the next. Both only delay
        # the ack: on any error they are dropped, and the entries are re-read from our pending list
        # (a re-delivered event_id is skipped by the store).
        self._prefetched: list[Entry] | None = None
        self._unacked: list[str] = []
        self._log = get_logger(__name__).bind(stream=stream_key, group=group, consumer=consumer)

    def stop(self) -> None:
        """Ask run() to return; it does within about block_ms, after committing the batch in hand."""
        self._stop.set()

    async def run(self) -> None:
        """Drain the stream until stop() (as standby while another writer is active); Redis and SQLite
        errors are logged and retried with backoff."""
        self._log.info("ledger_writer.started")
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if not await self._hold_lock():
                        await self._wait(self._standby_poll_s())
                        continue
                    if self.head_key is not None and not self.store.guarded:
                        await self._adopt_head()
                    await self._claim_due()
                    await self._step(block_ms=self.block_ms)
                    if self.anchorer is not None:
                        await self.anchorer.maybe()
                    await self._reconcile_due()
                    failures = 0
                except (RedisError, sqlite3.Error) as exc:
                    self._on_error(exc)
                    await self._wait(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**failures))
                    failures += 1
                except (LedgerDiverged, TreeError) as exc:
                    self._on_diverged(exc)
                    break
        finally:
            await self._shutdown()
        self._log.info("ledger_writer.stopped", written=self.written, processed=self.processed)

    async def _reconcile_due(self) -> None:
        """Run the reconciliation every reconcile_interval_s (while active)."""
        if self.reconciler is None or time.monotonic() < self._next_reconcile:
            return
        self._next_reconcile = time.monotonic() + self.reconcile_interval_s
        found = await self.reconciler()
        self.lost += found
        if found:
            self._log.warning("ledger_writer.jobs_lost", jobs=found)

    def _on_diverged(self, exc: LedgerDiverged | TreeError) -> None:
        """Stop writing for good: what is in the stream stays there (pending or new) for an operator."""
        self.diverged = exc
        self._forget_read_ahead()
        self._log.error("ledger_writer.diverged", error=str(exc))

    async def _adopt_head(self) -> None:
        """Take the file's head as the one to extend, if this writer (or the one before it) wrote it.

        It is: the head this writer wrote last; the head published with the last ack, followed only by rows
        whose entries are still pending (committed, not acked, by a writer that died); or the head of the
        latest anchor signed with this writer's key (after a clean stop with Redis's data lost, or when an
        operator attested the head with `ledger checkpoint --sign`), unless the published head is missing
        from the file (rolled back). Anything else was added to the file behind the writers' backs:
        LedgerDiverged."""
        seq, head_hash, _ = await self.store.head()
        found: Head = (seq, head_hash)
        own = self.store.written_head
        trusted: Head | None = None
        if own == found or found == (0, chain.GENESIS_HASH):
            trusted = found
        else:
            assert self.head_key is not None
            raw = await self.redis.get(self.head_key)
            published = _parse_head(raw)
            after = await self.store.rows_after(published) if published is not None else None
            if after is not None and (not after or set(after) <= await self._pending_event_ids(len(after))):
                trusted = found
            elif (published is None or after is not None) and await self._signed_by_us() == found:
                # (not when the published head is missing from the file: that file was rolled back)
                trusted = found
            if trusted is None:
                raise LedgerDiverged(published or own or (0, chain.GENESIS_HASH), found)
        self.store.expect_head(trusted)
        self._log.info("ledger_writer.head_adopted", head_seq=trusted[0])

    async def _signed_by_us(self) -> Head | None:
        if self.anchorer is None:
            return None
        return await own_signed_head(self.store, self.anchorer.key)

    async def _pending_event_ids(self, at_most: int) -> set[str]:
        """The event ids of the entries pending in the group (delivered to any consumer, not acked)."""
        if at_most > 10 * self.batch_size:  # more rows than writers ever leave unacked
            return set()
        await self._ensure_group()
        pending = await self.redis.xpending_range(
            self.stream_key, self.group, "-", "+", at_most + 2 * self.batch_size
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in pending:
                pipe.xrange(self.stream_key, item["message_id"], item["message_id"])
            replies = await pipe.execute()
        ids: set[str] = set()
        for reply in replies:
            for stream_id, fields in reply:
                event, _problem = decode_entry(stream_id, fields)
                ids.add(event["event_id"])
        return ids

    async def _wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking at once on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def _standby_poll_s(self) -> float:
        return self.lock.ttl_ms / 3000 if self.lock is not None else 1.0

    async def _hold_lock(self) -> bool:
        """Become or stay the active writer; False while another writer holds the lock."""
        if self.lock is None:
            return True
        now = time.monotonic()
        if self.active and now < self._next_renew:
            return True
        was_active = self.active
        self.active = await self.lock.acquire()
        self._next_renew = now + self.lock.ttl_ms / 3000
        if self.active and not was_active:
            self._log.info("ledger_writer.active")
            if self.head_key is not None:  # another writer may have written meanwhile: adopt its head anew
                self.store.guarded = False
            # We are the only active writer: whatever others left pending is orphaned; take it all now.
            self._claim_min_idle_ms = 0
        elif was_active and not self.active:
            self._log.warning("ledger_writer.lock_lost")
            self._forget_read_ahead()
        return self.active

    async def _claim_due(self) -> None:
        """Re-claim entries other consumers left pending: all of them at takeover, then the long-idle ones."""
        now = time.monotonic()
        if self._claim_min_idle_ms is None and now >= self._next_claim:
            self._claim_min_idle_ms = self.claim_idle_ms
        if self._claim_min_idle_ms is None:
            return
        await self._ensure_group()
        claimed = await self.claim_pending(self._claim_min_idle_ms)
        self._claim_min_idle_ms = None
        self._next_claim = now + self.claim_idle_ms / 1000
        if claimed:
            self._log.info("ledger.entries_claimed", entries=claimed)

    async def claim_pending(self, min_idle_ms: int) -> int:
        """XAUTOCLAIM every entry pending longer than `min_idle_ms` to this consumer (it is then read
        back as our own pending entries); returns how many were claimed."""
        start, claimed = "0-0", 0
        while True:
            reply = await self.redis.xautoclaim(
                self.stream_key, self.group, self.consumer, min_idle_ms, start_id=start, count=self.batch_size
            )
            start, entries = reply[0], reply[1]
            claimed += len(entries)
            if not start or start in ("0-0", b"0-0"):
                break
        if claimed:
            self.claimed += claimed
            self._pending_first = True
        return claimed

    async def _shutdown(self) -> None:
        """Ack what is committed, sign the final head and hand the lock over (a standby need not wait
        for the TTL)."""
        if self._unacked:
            with contextlib.suppress(RedisError):
                await self._ack()
        self._forget_read_ahead()
        if self.active and self.anchorer is not None and self.diverged is None:
            try:
                await self.anchorer.maybe(force=True)
            except (LedgerDiverged, TreeError) as exc:
                self._on_diverged(exc)
            except (RedisError, sqlite3.Error):
                pass
        if self.lock is not None:
            with contextlib.suppress(RedisError):
                await self.lock.release()
        self.active = self.lock is None

    async def drain_once(self) -> int:
        """Record everything in the stream now, without blocking; returns how many events were new.

        Errors propagate (no backoff here); the next call retries from this consumer's pending entries."""
        before = self.written
        while await self._step(block_ms=None):
            pass
        return self.written - before

    async def _step(self, block_ms: int | None) -> int:
        """Read and commit one batch (pending entries first); returns how many entries it handled."""
        try:
            await self._ensure_group()
            if self._pending_first:
                self._forget_read_ahead()
                entries = await self._read("0", self.batch_size, None)
                if entries:
                    await self._commit(entries)
                    return len(entries)
                self._pending_first = False
            if self._prefetched is not None:
                entries, self._prefetched = self._prefetched, None
            else:
                entries = await self._read(">", self.batch_size, block_ms)
                if entries and block_ms is not None and len(entries) < self.batch_size:
                    entries += await self._fill(self.batch_size - len(entries))
            if entries:
                await self._commit(entries)
            elif self._unacked:
                await self._ack()
            return len(entries)
        except BaseException:
            # Whatever was read but not acked sits in our pending list; re-reading it is the retry.
            # The group is re-ensured too (XGROUP CREATE is idempotent), in case the stream was recreated.
            self._pending_first = True
            self._group_ready = False
            self._forget_read_ahead()
            raise

    def _forget_read_ahead(self) -> None:
        """Drop the read-ahead batch and the deferred acks: those entries stay in our pending list and
        are re-read from it (already committed ones are skipped by event_id)."""
        self._prefetched = None
        self._unacked = []

    async def _fill(self, room: int) -> list[Entry]:
        """Wait up to batch_delay_s for more entries, so a trickle is still written in batches."""
        more: list[Entry] = []
        deadline = time.monotonic() + self.batch_delay_s
        while room > len(more):
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms < 1:  # BLOCK 0 would mean "forever"
                break
            got = await self._read(">", room - len(more), wait_ms)
            if not got:
                break
            more += got
        return more

    async def _ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read(self, stream_id: str, count: int, block_ms: int | None) -> list[Entry]:
        """One XREADGROUP: ">" for new entries, "0" for this consumer's pending ones."""
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream_key: stream_id}, count=count, block=block_ms
        )
        return _entries(reply)

    async def _commit(self, entries: list[Entry]) -> None:
        """Store the batch in one transaction, then (and only then) XACK and XDEL its entries.

        The entries are decoded on the store's SQLite thread. While it works, the previous batch's ack
        goes out and, when this batch was full (a backlog), the next batch is read; this batch's own
        ack then waits for the next commit, or goes out at once when nothing more was read."""
        insert = asyncio.ensure_future(self.store.insert_prepared(functools.partial(decode_batch, entries)))
        try:
            if self._unacked:
                await self._ack()
            if len(entries) >= self.batch_size:
                self._prefetched = await self._read(">", self.batch_size, None) or None
        except BaseException:
            # The insert runs on regardless (its thread finishes the transaction); let it end first.
            await asyncio.wait([insert])
            if not insert.cancelled() and insert.exception() is not None:
                self._log.warning("ledger.batch_not_committed", error=repr(insert.exception()))
            raise
        inserted, problems = await insert
        for stream_id, problem in problems:
            self.malformed += 1
            self._log.warning("ledger.entry_malformed", stream_id=stream_id, problem=problem)
        self.written += inserted
        self._unacked = [stream_id for stream_id, _ in entries]
        self._log.debug("ledger.batch_committed", entries=len(entries), inserted=inserted)
        if self._prefetched is None:
            await self._ack()

    async def _ack(self) -> None:
        """XACK and XDEL the committed entries not yet acknowledged."""
        ids = self._unacked
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream_key, self.group, *ids)
            pipe.xdel(self.stream_key, *ids)
            head = self.store.written_head
            if self.head_key is not None and head is not None:
                pipe.set(self.head_key, f"{head[0]}:{head[1]}")
            await pipe.execute()
        self._unacked = []
        self.processed += len(ids)

    def _on_error(self, exc: Exception) -> None:
        """Count and log a failed step (the step itself arranged for its retry)."""
        self.errors += 1
        source = "sqlite" if isinstance(exc, sqlite3.Error) else "redis"
        self._log.warning("ledger_writer.error", source=source, error=repr(exc))


def decode_batch(entries: list[Entry]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The events of a batch, and (stream id, problem) for each entry recorded as `malformed`.

    An entry without fields was deleted from the stream while pending: it was committed and acked
    before, so it yields no event."""
    events: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for stream_id, fields in entries:
        if fields is None:
            continue
        event, problem = decode_entry(stream_id, fields)
        if problem is not None:
            problems.append((stream_id, problem))
        events.append(event)
    return events, problems


def _parse_head(raw: str | bytes | None) -> Head | None:
    """A head published as `seq:hash`."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    seq, _, head_hash = text.partition(":")
    return (int(seq), head_hash) if seq.isdigit() and head_hash else None


def _entries(reply: Any) -> list[Entry]:
    """The entries of our one stream from an XREADGROUP reply (RESP2 list or RESP3 dict form)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = [item for groups in reply.values() for item in groups]
    else:
        streams = [stream_entries for _key, stream_entries in reply]
    return [(stream_id, fields) for batch in streams for stream_id, fields in batch if stream_id is not None]
