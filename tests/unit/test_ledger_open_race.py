"""Writers opening a new ledger file at once on one host all get it, migrated once, in WAL mode.

Two workers started together on a fresh ledger path (the benchmark's fair runs) both asked for WAL; SQLite
answers the loser "database is locked" at once, without waiting, and that worker exited at startup."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from ledger import migrations
from ledger.sqlite_store import connect_writer
from tests.races import at_once


def _open(path: Path) -> None:
    migrations.migrate_file(path)
    connect_writer(path).close()


def test_openers_racing_on_a_new_file_all_succeed(tmp_path: Path) -> None:
    for round_ in range(20):
        path = tmp_path / f"round-{round_}" / "ledger.db"
        _, errors = at_once(functools.partial(_open, path), 6)
        assert errors == []
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert migrations.current_version(conn) == migrations.LATEST
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
            assert versions == list(range(1, migrations.LATEST + 1))  # each applied once
        finally:
            conn.close()


def test_a_lock_held_past_the_wait_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        try:
            migrations.use_wal(other, wait_s=0.2)
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
        else:
            raise AssertionError("use_wal returned while another connection held the file")
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()
