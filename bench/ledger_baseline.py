"""The ledger writer's physical limit: the rows it wrote, inserted again into a fresh ledger file with
plain `executemany`, one transaction per batch of the writer's size. Same file settings (WAL,
synchronous=FULL, `connect_writer`), same schema and indexes (the migrations), the writer's own insert
statement; no stream reads, no decoding, no hashing (the rows carry their hashes), no projections."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ledger import migrations
from ledger.chain import ROW_COLUMNS
from ledger.sqlite_store import connect_writer

_COLUMNS = ", ".join(ROW_COLUMNS)
_INSERT = f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"


def written_rows(ledger_file: Path) -> list[tuple[object, ...]]:
    """Every event row of a ledger file, in chain order."""
    conn = sqlite3.connect(ledger_file)
    try:
        return conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def plain_insert_rate(rows: list[tuple[object, ...]], target: Path, batch: int) -> float:
    """Rows/s of inserting `rows` into a fresh ledger file at `target`, from the first committed batch to
    the last (as the writer's rate is measured)."""
    migrations.migrate_file(target)
    conn = connect_writer(target)
    try:
        first: tuple[float, int] | None = None
        for start in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows[start : start + batch])
            conn.execute("COMMIT")
            if first is None:
                first = (time.perf_counter(), min(len(rows), start + batch))
        end = time.perf_counter()
    finally:
        conn.close()
    if first is None or first[1] >= len(rows):
        raise ValueError("the baseline needs more rows than one batch")
    return (len(rows) - first[1]) / (end - first[0])


# The tables a drain fills beside `events`: the read models (jobs, search index, projects) and the Merkle
# tree's nodes. Not the FTS index's own shadow tables (the index fills them), nor what the migrations or
# the signer write (a handful of rows a drain).
_NOT_WRITTEN_BY_A_DRAIN = ("schema_migrations", "merkle_state", "anchors", "tree_checkpoints", "checkpoints")
_FTS_SHADOW = ("_config", "_content", "_data", "_docsize", "_idx")


def written_tables(ledger_file: Path) -> dict[str, tuple[list[str], list[tuple[object, ...]]]]:
    """Every table a drain wrote rows to, with its columns and rows (events in chain order)."""
    conn = sqlite3.connect(ledger_file)
    try:
        names = [
            n
            for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            if not n.startswith("sqlite_")
            and n not in _NOT_WRITTEN_BY_A_DRAIN
            and not n.endswith(_FTS_SHADOW)
        ]
        tables = {}
        for name in names:
            cur = conn.execute(f'SELECT * FROM "{name}"' + (" ORDER BY seq" if name == "events" else ""))
            rows = cur.fetchall()
            if rows:
                tables[name] = ([d[0] for d in cur.description], rows)
        return tables
    finally:
        conn.close()


def plain_insert_all_rate(
    tables: dict[str, tuple[list[str], list[tuple[object, ...]]]], target: Path, batch: int
) -> float:
    """Event rows/s of inserting every table's rows (`written_tables`) into a fresh ledger file: each
    transaction holds a batch of events and the same share of every other table's rows. The writer's
    limit with its read models and tree counted as rows too, not as work."""
    migrations.migrate_file(target)
    events = len(tables["events"][1])
    parts = -(-events // batch)
    inserts = {
        name: f'INSERT INTO "{name}" ({", ".join(cols)}) VALUES ({", ".join("?" for _ in cols)})'
        for name, (cols, _) in tables.items()
    }
    conn = connect_writer(target)
    try:
        first: tuple[float, int] | None = None
        for part in range(parts):
            conn.execute("BEGIN IMMEDIATE")
            for name, (_, rows) in tables.items():
                share = -(-len(rows) // parts)
                conn.executemany(inserts[name], rows[part * share : (part + 1) * share])
            conn.execute("COMMIT")
            if first is None:
                first = (time.perf_counter(), min(events, batch))
        end = time.perf_counter()
    finally:
        conn.close()
    if first is None or first[1] >= events:
        raise ValueError("the baseline needs more rows than one batch")
    return (events - first[1]) / (end - first[0])
