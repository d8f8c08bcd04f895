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
