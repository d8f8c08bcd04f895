"""The one owner of the SQLite ledger file: opens it (WAL, fsync on commit, migrated), appends events to the
hash chain, keeps the read models and the anchors table."""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ledger import chain, migrations, queries, redaction
from ledger.chain import ROW_COLUMNS, UNKNOWN_POLICY
from ledger.errors import LedgerDiverged
from ledger.projections import SearchRows, StatementBatch, project, select_in
from ledger.tree_store import TreeAppender, TreeHead, read_state
from plangate_base import clock, codec
from plangate_base.vocabulary import EventKind

_T = TypeVar("_T")
Head = tuple[int, str]

# Two writer processes on one file queue up on the lock for this long instead of failing at once.
BUSY_TIMEOUT_MS = 10_000

_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
_INSERT_NEW_EVENT = _INSERT_EVENT.replace("INSERT OR IGNORE", "INSERT", 1)
_KNOWN_IDS = "SELECT event_id FROM events WHERE event_id IN ({})"
_ROW_VALUES = operator.itemgetter(*ROW_COLUMNS)
_INSERT_ANCHOR = (
    "INSERT INTO anchors (head_seq, head_hash, row_count, created_at, key_id, signature)"
    " VALUES (:head_seq, :head_hash, :row_count, :created_at, :key_id, :signature)"
)

_INSERT_CHECKPOINT = (
    "INSERT INTO tree_checkpoints (tree_size, root_hash, head_seq, head_hash, created_at, key_id, note)"
    " VALUES (:tree_size, :root_hash, :head_seq, :head_hash, :created_at, :key_id, :note)"
)


class LedgerStore:
    """The SQLite ledger file; get one with `await LedgerStore.open(path)`.

    Writes (event batches, anchors, the head read for an anchor) run on a plain `sqlite3` connection in
    one thread of the store's own: a whole batch — chain rows, projections, search index — is one call
    there, one thread hop, not one per statement. Read-side queries use an aiosqlite connection."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        writer: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        path: Path,
        policy_version: str,
        merkle: bool = True,
    ) -> None:
        self._conn = conn
        self._writer = writer
        # One thread: calls on the writer connection run one after the other even when the awaiting
        # coroutine was cancelled (its call still runs to COMMIT or ROLLBACK before the next one starts).
        self._executor = executor
        self.path = path
        self.policy_version = policy_version
        self.merkle = merkle
        # The head this store last wrote. Once guarded (expect_head, the active ledger writer), a batch
        # extends only that head, so a row added to the file behind the writer is never extended, nor
        # signed (LedgerDiverged). Unguarded (tests, imports, several stores on one file) a batch extends
        # whatever head the file has.
        self.written_head: Head | None = None
        self.guarded = False
        # One connection carries one transaction at a time; concurrent callers take turns.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], policy_version: str = UNKNOWN_POLICY, *, merkle: bool = True
    ) -> LedgerStore:
        """Open (creating if needed) the ledger at `path`: WAL, synchronous=FULL, migrations applied.

        `policy_version` is stamped on (and hashed with) every row this store writes. `merkle=False` leaves
        the Merkle tree behind (bench/ only: the file then has no usable tree)."""
        file = Path(path)
        await asyncio.to_thread(migrations.migrate_file, file)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        try:
            writer = await asyncio.get_running_loop().run_in_executor(executor, connect_writer, file)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        try:
            # isolation_level=None: transactions are ours (BEGIN ... COMMIT), not the sqlite3 module's.
            conn = await aiosqlite.connect(file, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except BaseException:
            await asyncio.get_running_loop().run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            raise
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await conn.close()
            await asyncio.get_running_loop().run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            raise
        return cls(conn, writer, executor, file, policy_version, merkle)

    async def _in_writer(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(writer_connection, *args)` on the writer thread (call with the lock held)."""
        call = functools.partial(fn, self._writer, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def insert_events(self, events: list[dict[str, Any]]) -> int:
        """Append a batch to the chain in one transaction, skipping known event_ids; returns the new count."""
        if not events:
            return 0
        async with self._lock:
            inserted, self.written_head = await self._in_writer(
                _insert_checked, events, self.policy_version, self._expected(), self.merkle
            )
            return inserted

    async def insert_prepared(self, prepare: Callable[[], tuple[list[dict[str, Any]], _T]]) -> tuple[int, _T]:
        """`insert_events(events)` for `events, extra = prepare()`, with prepare() run on the writer thread
        too; returns (the new count, extra).

        The ledger writer decodes its stream entries this way: the event loop is left with the Redis I/O
        and holds the GIL less, so it stalls the SQLite thread (waiting for the GIL) less."""
        async with self._lock:
            inserted, extra, head = await self._in_writer(
                _prepare_and_insert_sync, prepare, self.policy_version, self._expected(), self.merkle
            )
            if head is not None:
                self.written_head = head
            return inserted, extra

    def _expected(self) -> Head | None:
        return self.written_head if self.guarded else None

    def expect_head(self, head: Head) -> None:
        """From now on extend only `head` and the heads this store writes after it (the active writer)."""
        self.written_head, self.guarded = head, True

    async def tree_head(self) -> TreeHead:
        """The chain head and the Merkle tree head, read in one transaction (what a checkpoint signs)."""
        async with self._lock:
            return await self._in_writer(_tree_head_sync)

    async def head(self) -> tuple[int, str, int]:
        """(seq, hash, row count including archived rows) of the chain head, in one read transaction."""
        async with self._lock:
            return await self._in_writer(_head_sync)

    async def add_anchor(self, anchor: dict[str, Any], checkpoint: dict[str, Any] | None = None) -> None:
        """Keep a signed anchor (and the signed checkpoint of the same moment) in the file, in one commit."""
        async with self._lock:
            await self._in_writer(_add_anchor_sync, anchor, checkpoint)

    async def rows_after(self, head: Head) -> list[str] | None:
        """The event ids of the rows after `head`, oldest first; None when the file has no row `head`."""
        async with self._lock:
            return await self._in_writer(_rows_after_sync, head)

    async def latest_signed(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The latest anchor and the latest tree checkpoint kept in the file (signatures not checked)."""
        async with self._lock:
            return await self._in_writer(_latest_signed_sync)

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
            try:
                await self._conn.close()
            finally:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
                self._executor.shutdown(wait=False)


def connect_writer(file: Path) -> sqlite3.Connection:
    """The writer's connection: autocommit mode (transactions are ours), WAL, fsync on commit.

    Public with `insert_batch_sync` for bench/ledger_cost.py, which counts their work without a thread."""
    # Opened, used and closed on the store's one writer thread, which also serialises it (with the
    # store's lock); check_same_thread=False only so that it need not stay that way.
    conn = sqlite3.connect(
        file, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        migrations.use_wal(conn, BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def insert_batch_sync(
    conn: sqlite3.Connection,
    events: list[dict[str, Any]],
    policy_version: str = UNKNOWN_POLICY,
    *,
    merkle: bool = True,
) -> int:
    """Append a batch to the chain and project it, in one transaction; returns how many rows are new.

    `merkle=False` leaves the Merkle tree behind (bench/ledger_tree.py measures what the tree costs)."""
    return _insert_checked(conn, events, policy_version, None, merkle)[0]


def _insert_checked(
    conn: sqlite3.Connection,
    events: list[dict[str, Any]],
    policy_version: str,
    expected: Head | None,
    merkle: bool,
) -> tuple[int, Head]:
    """insert_batch_sync, refusing (LedgerDiverged) unless the file's head is `expected` (None: any);
    returns (new rows, the head after the batch). The Merkle tree grows in the same transaction."""
    # IMMEDIATE takes the write lock up front, so a second writer waits (busy_timeout) at BEGIN, and the
    # head read below is the head this batch extends: two writers cannot fork the chain.
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, prev_hash = chain.read_head(conn)
        if expected is not None and (seq, prev_hash) != expected:
            raise LedgerDiverged(expected, (seq, prev_hash))
        tree = TreeAppender(conn, seq) if merkle else None
        append = _append_in_order if any(e["kind"] == EventKind.REDACTED for e in events) else _append_batch
        inserted, seq, prev_hash = append(conn, events, seq, prev_hash, tree, policy_version)
        if tree is not None:
            tree.flush(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # (a failed COMMIT may leave it open; some errors end it themselves)
            conn.execute("ROLLBACK")
        raise
    return inserted, (seq, prev_hash)


def _append_batch(
    conn: sqlite3.Connection,
    events: list[dict[str, Any]],
    seq: int,
    prev_hash: str,
    tree: TreeAppender | None,
    policy_version: str,
) -> tuple[int, int, str]:
    """Chain, hash and project the new events of a batch in Python, then write them with one executemany
    per statement; returns (new rows, head seq, head hash).

    The event ids already recorded (re-deliveries) are found with one lookup first, so the chain is
    built once, knowing which rows are new; a plain INSERT then fails the batch rather than skip a row
    the lookup missed."""
    known = {r[0] for r in select_in(conn, _KNOWN_IDS, [e["event_id"] for e in events])}
    recorded_at = clock.now_iso()
    rows: list[tuple[Any, ...]] = []
    statements = StatementBatch()
    search = SearchRows()
    for event in events:
        event_id = event["event_id"]
        if event_id in known:  # a re-delivery (or a repeat within the batch): the chain does not move
            continue
        known.add(event_id)
        row = chain.seal(_row(event, seq + 1, recorded_at, policy_version), prev_hash)
        seq, prev_hash = seq + 1, row["row_hash"]
        rows.append(_ROW_VALUES(row))
        if tree is not None:
            tree.add(prev_hash)
        # (the row's payload text is codec.dumps(payload) whenever the event has a payload)
        project(statements, event, row["payload"], search)
    conn.executemany(_INSERT_NEW_EVENT, rows)
    statements.flush(conn)
    search.flush(conn)
    return len(rows), seq, prev_hash


def _append_in_order(
    conn: sqlite3.Connection,
    events: list[dict[str, Any]],
    seq: int,
    prev_hash: str,
    tree: TreeAppender | None,
    policy_version: str,
) -> tuple[int, int, str]:
    """_append_batch one row at a time, for a batch holding a redaction: a `redacted` event rewrites rows
    and re-projects their jobs from the rows, so what comes before it must be written when it applies."""
    recorded_at = clock.now_iso()
    inserted = 0
    search = SearchRows()
    for event in events:
        row = chain.seal(_row(event, seq + 1, recorded_at, policy_version), prev_hash)
        cur = conn.execute(_INSERT_EVENT, _ROW_VALUES(row))
        if cur.rowcount == 1:  # 0: a known event_id (a re-delivery); the chain does not move
            seq, prev_hash = seq + 1, row["row_hash"]
            inserted += 1
            if tree is not None:
                tree.add(prev_hash)
            if event["kind"] == EventKind.REDACTED:
                search.flush(conn)  # (the redacted jobs are re-projected from their rows now)
                redaction.apply(conn, event)
            project(conn, event, row["payload"], search)
    search.flush(conn)
    return inserted, seq, prev_hash


def _prepare_and_insert_sync(
    conn: sqlite3.Connection,
    prepare: Callable[[], tuple[list[dict[str, Any]], _T]],
    policy_version: str,
    expected: Head | None,
    merkle: bool,
) -> tuple[int, _T, Head | None]:
    events, extra = prepare()
    if not events:
        return 0, extra, None
    inserted, head = _insert_checked(conn, events, policy_version, expected, merkle)
    return inserted, extra, head


def _row(event: dict[str, Any], seq: int, recorded_at: str, policy_version: str) -> dict[str, Any]:
    """The full row of an event, before sealing."""
    payload = event.get("payload")
    payload = payload if payload is not None else {}
    policy = payload.get("policy_version") if isinstance(payload, dict) else None
    row: dict[str, Any] = {name: event.get(name) for name in chain.CHAIN_COLUMNS}
    row.update(chain.audit_columns(event))
    row.update(
        seq=seq,
        payload=codec.dumps(payload),
        recorded_at=recorded_at,
        schema_version=migrations.LATEST,
        policy_version=policy if isinstance(policy, str) else policy_version,
    )
    return row


def _head_sync(conn: sqlite3.Connection) -> tuple[int, str, int]:
    """(seq, hash, row count including archived rows) of the chain head, in one read transaction."""
    conn.execute("BEGIN")
    try:
        seq, head_hash = chain.read_head(conn)
        row = conn.execute(
            "SELECT (SELECT count(*) FROM events)"
            " + coalesce((SELECT total_rows FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1), 0)"
        ).fetchone()
    finally:
        conn.execute("COMMIT")
    return seq, head_hash, int(row[0]) if row else 0


def _rows_after_sync(conn: sqlite3.Connection, head: Head) -> list[str] | None:
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT row_hash FROM events WHERE seq = ?", (head[0],)).fetchone()
        if (row is None or row[0] != head[1]) and head != chain.read_head(conn):
            return None
        return [
            r[0] for r in conn.execute("SELECT event_id FROM events WHERE seq > ? ORDER BY seq", (head[0],))
        ]
    finally:
        conn.execute("COMMIT")


def _latest_signed_sync(conn: sqlite3.Connection) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    conn.row_factory = sqlite3.Row
    try:
        anchor = conn.execute("SELECT * FROM anchors ORDER BY anchor_id DESC LIMIT 1").fetchone()
        checkpoint = conn.execute(
            "SELECT * FROM tree_checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.row_factory = None
    return (dict(anchor) if anchor else None), (dict(checkpoint) if checkpoint else None)


def _tree_head_sync(conn: sqlite3.Connection) -> TreeHead:
    conn.execute("BEGIN")
    try:
        seq, head_hash = chain.read_head(conn)
        base, tree = read_state(conn)
    finally:
        conn.execute("COMMIT")
    return TreeHead(seq, head_hash, tree.size, tree.root(), base)


def _add_anchor_sync(
    conn: sqlite3.Connection, anchor: dict[str, Any], checkpoint: dict[str, Any] | None
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_INSERT_ANCHOR, anchor)
        if checkpoint is not None:
            conn.execute(_INSERT_CHECKPOINT, checkpoint)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
