"""Numbered schema migrations (`ledger/migrations/NNNN_name.sql`), applied in order, each in one transaction.

Applied versions are rows of `schema_migrations`; `PRAGMA user_version` mirrors the latest. A file from
the first cut (user_version 1, no schema_migrations table) counts as having migration 1 applied.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ledger import chain, projections, tree_store
from ledger.errors import MigrationError, SchemaTooNew
from plangate_base import clock
from plangate_base.logs import get_logger

log = get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Steps SQL cannot do (SHA-256 over rows), run after a migration's SQL in the same transaction.
_PYTHON_STEPS: dict[int, Callable[[sqlite3.Connection], int]] = {
    2: chain.backfill,
    5: projections.rebuild_search,
    6: tree_store.build,
}


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with this code, in version order."""
    found = []
    for entry in resources.files("ledger").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files are not numbered 1..N: {[m.version for m in found]}")
    return found


LATEST = len(available())
"""The schema version this code writes."""


def statements(sql: str) -> list[str]:
    """Split a migration script into complete statements (trigger bodies stay whole)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise MigrationError(f"incomplete statement at the end of a migration: {buf.strip()[:60]!r}")
    return out


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """The versions applied to this database (the first cut's user_version counts as migration 1)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    versions = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}
    user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if user_version > LATEST or (versions and max(versions) > LATEST):
        raise SchemaTooNew(max(user_version, *versions, 0), LATEST)
    if not versions and user_version >= 1:
        versions = set(range(1, user_version + 1))
    return versions


def migrate(conn: sqlite3.Connection, target: int | None = None) -> list[int]:
    """Apply every missing migration up to `target` (default LATEST); returns the versions applied.

    `conn` must be in autocommit mode (isolation_level=None); each migration is its own transaction."""
    goal = LATEST if target is None else target
    if not 0 <= goal <= LATEST:
        raise MigrationError(f"no migration {goal} (this code knows 1..{LATEST})")
    done: list[int] = []
    for migration in available()[:goal]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if migration.version in applied_versions(conn):
                conn.execute("ROLLBACK")
                continue
            for statement in statements(migration.sql):
                conn.execute(statement)
            step = _PYTHON_STEPS.get(migration.version)
            sealed = step(conn) if step else 0
            _stamp(conn, migration)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("ledger.migrated", version=migration.version, name=migration.name, rows=sealed)
        done.append(migration.version)
    return done


def _stamp(conn: sqlite3.Connection, migration: Migration) -> None:
    """Record a migration as applied, with the backfilled baseline of a first-cut file."""
    known = applied_versions(conn)
    for version in sorted(known - _table_versions(conn)):
        # A first-cut file: record its implicit migrations so the table tells the whole story.
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, available()[version - 1].name, clock.now_iso()),
        )
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        (migration.version, migration.name, clock.now_iso()),
    )
    conn.execute(f"PRAGMA user_version = {migration.version}")


def _table_versions(conn: sqlite3.Connection) -> set[int]:
    return {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}


_WAL_WAIT_S = 10.0


def use_wal(conn: sqlite3.Connection, wait_s: float = _WAL_WAIT_S) -> None:
    """Put the file in WAL mode, waiting up to `wait_s` for another process doing the same.

    Two processes opening a new file at once (two workers starting on one host) both ask for WAL; the
    switch needs the file to itself, and SQLite answers "database is locked" at once, without calling
    the busy handler (it would deadlock waiting on a reader), so the wait is here."""
    deadline = time.monotonic() + wait_s
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def migrate_file(path: str | os.PathLike[str], target: int | None = None) -> list[int]:
    """Open (creating if needed) the ledger file in WAL mode and migrate it; returns the versions applied."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(file, isolation_level=None, timeout=_WAL_WAIT_S)
    try:
        use_wal(conn)
        conn.execute("PRAGMA synchronous = FULL")
        return migrate(conn, target)
    finally:
        conn.close()


def current_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied to this database (0 for an empty file)."""
    return max(applied_versions(conn), default=0)
