"""Retention without breaking the chain: move the oldest rows into a sealed archive file and leave a signed
checkpoint (the last archived row's seq and hash) from which the remaining chain still verifies."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import migrations, signing, tree_store
from ledger.errors import CompactionError
from ledger.projection_check import replay
from ledger.queries import normalize_time
from ledger.verify import verify_ledger
from plangate_base import clock


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one compaction moved and where."""

    archive: Path
    through_seq: int
    archived_rows: int
    archive_sha256: str


def compact(
    path: str | os.PathLike[str], before: str, archive: str | os.PathLike[str], key: Ed25519PrivateKey
) -> CompactionResult:
    """Archive the rows recorded before `before` (a UTC ISO time, the leading run in seq order) into
    `archive` (a new file, made read-only), then delete them here behind a signed checkpoint."""
    ledger, target = Path(path), Path(archive)
    if target.exists():
        raise CompactionError(f"archive {target} exists already")
    report = verify_ledger(ledger, key.public_key())
    if not report.ok:
        raise CompactionError(f"the ledger does not verify ({report.detail}); not compacting")
    conn = sqlite3.connect(ledger, isolation_level=None, timeout=10.0)
    try:
        through = _cut_point(conn, normalize_time(before))
        if through is None:
            raise CompactionError(f"no rows recorded before {before}")
        through_seq, through_hash = through
        cut_tree = tree_store.range_at(conn, through_seq)
        archived = _write_archive(conn, target, through_seq)
        _build_archive_tree(target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        target.chmod(0o444)
        _cut(conn, key, through_seq, through_hash, archived, target.name, digest, cut_tree)
    finally:
        conn.close()
    return CompactionResult(target, through_seq, archived, digest)


def _cut_point(conn: sqlite3.Connection, before: str) -> tuple[int, str] | None:
    """(seq, hash) of the last row of the leading run recorded before `before`, if any."""
    first_kept = conn.execute("SELECT min(seq) FROM events WHERE recorded_at >= ?", (before,)).fetchone()[0]
    sql = "SELECT seq, row_hash FROM events" + (" WHERE seq < ?" if first_kept is not None else "")
    row = conn.execute(
        sql + " ORDER BY seq DESC LIMIT 1", (first_kept,) if first_kept is not None else ()
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _write_archive(conn: sqlite3.Connection, target: Path, through_seq: int) -> int:
    """Copy rows up to `through_seq`, the earlier checkpoints and the anchors they cover into `target`.

    The archive is a ledger file of the ledger's schema version (its tables, append-only triggers and
    migrations table), so `plangate ledger verify ARCHIVE` checks it like a ledger and finds nothing
    missing. One file (no WAL beside it), so its SHA-256 covers all of it."""
    _create_archive(target, migrations.current_version(conn))
    conn.execute("ATTACH DATABASE ? AS arc", (str(target),))
    try:
        conn.execute("BEGIN")
        copies = (
            ("events", " WHERE seq <= ?", (through_seq,)),
            ("checkpoints", "", ()),
            ("anchors", " WHERE head_seq <= ?", (through_seq,)),
            ("tree_checkpoints", " WHERE head_seq <= ?", (through_seq,)),
            ("merkle_cuts", "", ()),
        )
        for table, where, params in copies:
            columns = ", ".join(f'"{name}"' for name in _columns(conn, table))
            copy = f"INSERT INTO arc.{table} ({columns}) SELECT {columns} FROM main.{table}{where}"
            conn.execute(copy, params)
        conn.execute("COMMIT")
        return int(conn.execute("SELECT count(*) FROM arc.events").fetchone()[0])
    finally:
        conn.execute("DETACH DATABASE arc")


def _build_archive_tree(target: Path) -> None:
    """The archive's own Merkle tree and read models over its rows (its checkpoints then verify there,
    and `ledger show`/`search --ledger ARCHIVE` read its jobs)."""
    archive = sqlite3.connect(target, isolation_level=None, timeout=10.0)
    try:
        archive.execute("BEGIN IMMEDIATE")
        tree_store.build(archive)
        replay(archive, archive)
        archive.execute("COMMIT")
    finally:
        archive.close()


def _create_archive(target: Path, version: int) -> None:
    """A new, empty ledger file at `target`, migrated to `version`, in rollback-journal mode."""
    archive = sqlite3.connect(target, isolation_level=None, timeout=10.0)
    try:
        archive.execute("PRAGMA journal_mode = DELETE")
        archive.execute("PRAGMA synchronous = FULL")
        migrations.migrate(archive, version)
    finally:
        archive.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]


def _cut(
    conn: sqlite3.Connection,
    key: Ed25519PrivateKey,
    through_seq: int,
    through_hash: str,
    archived: int,
    archive_name: str,
    digest: str,
    cut_tree: tree_store.merkle.CompactRange | None,
) -> None:
    """In one transaction: delete the archived rows (past the append-only triggers) and add the checkpoint."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        previous = conn.execute(
            "SELECT total_rows FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        ).fetchone()
        fields = {
            "through_seq": through_seq,
            "through_hash": through_hash,
            "archived_rows": archived,
            "total_rows": (previous[0] if previous else 0) + archived,
            "archive_file": archive_name,
            "archive_sha256": digest,
            "created_at": clock.now_iso(),
            "key_id": signing.key_id(key.public_key()),
        }
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
        ).fetchall()
        for name, _sql in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DELETE FROM events WHERE seq <= ?", (through_seq,))
        if cut_tree is not None:
            tree_store.keep_cut(conn, through_seq, cut_tree)
        for _name, sql in triggers:
            conn.execute(sql)
        conn.execute(
            f"INSERT INTO checkpoints ({', '.join(fields)}, signature)"
            f" VALUES ({', '.join('?' for _ in fields)}, ?)",
            (*fields.values(), signing.sign(key, fields)),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
