"""The one owner of the SQLite ledger file: opens it (WAL, fsync on commit, migrated), appends events to the
hash chain, keeps the read models and the anchors table."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiosqlite

from ledger import chain, migrations, queries
from ledger.chain import ROW_COLUMNS, UNKNOWN_POLICY
from ledger.events import dumps
from ledger.projections import project

# Two writer processes on one file queue up on the lock for this long instead of failing at once.
BUSY_TIMEOUT_MS = 10_000

_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
_INSERT_ANCHOR = (
    "INSERT INTO anchors (head_seq, head_hash, row_count, created_at, key_id, signature)"
    " VALUES (:head_seq, :head_hash, :row_count, :created_at, :key_id, :signature)"
)


class LedgerStore:
    """The SQLite ledger file behind one aiosqlite connection; get one with `await LedgerStore.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, policy_version: str) -> None:
        self._conn = conn
        self.path = path
        self.policy_version = policy_version
        # One connection carries one transaction at a time; concurrent callers take turns.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], policy_version: str = UNKNOWN_POLICY) -> LedgerStore:
        """Open (creating if needed) the ledger at `path`: WAL, synchronous=FULL, migrations applied.

        `policy_version` is stamped on (and hashed with) every row this store writes."""
        file = Path(path)
        await asyncio.to_thread(migrations.migrate_file, file)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE ... COMMIT), not the sqlite3 module's.
        conn = await aiosqlite.connect(file, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, file, policy_version)

    async def insert_events(self, events: list[dict[str, Any]]) -> int:
        """Append a batch to the chain in one transaction, skipping known event_ids; returns the new count."""
        if not events:
            return 0
        inserted = 0
        async with self._lock:
            # IMMEDIATE takes the write lock up front, so a second writer waits (busy_timeout) at BEGIN,
            # and the head read below is the head this batch extends: two writers cannot fork the chain.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                seq, prev_hash = await self._head_locked()
                recorded_at = chain.now_iso()
                for event in events:
                    row = chain.seal(self._row(event, seq + 1, recorded_at), prev_hash)
                    cur = await self._conn.execute(_INSERT_EVENT, tuple(row[c] for c in ROW_COLUMNS))
                    new = cur.rowcount == 1  # 0: a known event_id (a re-delivery); the chain does not move
                    await cur.close()
                    if new:
                        seq, prev_hash = seq + 1, row["row_hash"]
                        inserted += 1
                        await project(self._conn, event)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")
        return inserted

    def _row(self, event: dict[str, Any], seq: int, recorded_at: str) -> dict[str, Any]:
        """The full row of an event, before sealing."""
        payload = event.get("payload")
        payload = payload if payload is not None else {}
        policy = payload.get("policy_version") if isinstance(payload, dict) else None
        row: dict[str, Any] = {name: event.get(name) for name in chain.CHAIN_COLUMNS}
        row.update(chain.audit_columns(event))
        row.update(
            seq=seq,
            payload=dumps(payload),
            recorded_at=recorded_at,
            schema_version=migrations.LATEST,
            policy_version=policy if isinstance(policy, str) else self.policy_version,
        )
        return row

    async def _head_locked(self) -> tuple[int, str]:
        """(seq, hash) of the chain head, read by this connection (call inside a transaction)."""
        async with self._conn.execute("SELECT seq, row_hash FROM events ORDER BY seq DESC LIMIT 1") as cur:
            last = await cur.fetchone()
        if last is not None:
            return int(last[0]), str(last[1])
        async with self._conn.execute(
            "SELECT through_seq, through_hash FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        ) as cur:
            cut = await cur.fetchone()
        return (int(cut[0]), str(cut[1])) if cut is not None else (0, chain.GENESIS_HASH)

    async def head(self) -> tuple[int, str, int]:
        """(seq, hash, row count including archived rows) of the chain head, in one read transaction."""
        async with self._lock:
            await self._conn.execute("BEGIN")
            try:
                seq, head_hash = await self._head_locked()
                async with self._conn.execute(
                    "SELECT (SELECT count(*) FROM events)"
                    " + coalesce((SELECT total_rows FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1), 0)"
                ) as cur:
                    row = await cur.fetchone()
            finally:
                await self._conn.execute("COMMIT")
        return seq, head_hash, int(row[0]) if row else 0

    async def add_anchor(self, anchor: dict[str, Any]) -> None:
        """Keep a signed anchor in the file (it is also published to Redis and exportable)."""
        async with self._lock:
            await self._conn.execute(_INSERT_ANCHOR, anchor)

    async def events_for_job(self, job_id: str) -> list[dict[str, Any]]:
        """All events of one job, ordered by seq, payload parsed."""
        async with self._lock:
            return await queries.fetch_job_events(self._conn, job_id)

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The job's projection row, or None."""
        async with self._lock:
            return await queries.fetch_job(self._conn, job_id)

    async def count_events(self, kind: str | None = None) -> int:
        """How many events are recorded (of `kind`, if given)."""
        async with self._lock:
            return await queries.count_events(self._conn, kind)

    async def pragma(self, name: str) -> Any:
        """The current value of a read-only PRAGMA such as journal_mode or synchronous (for checks)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        async with self._lock, self._conn.execute(f"PRAGMA {name}") as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def close(self) -> None:
        """Close the connection (committed data is already durable)."""
        async with self._lock:
            await self._conn.close()
