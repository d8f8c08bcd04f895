"""`plangate ledger verify`: walk the hash chain, check it against the signed anchors, name the first bad row.

The walk checks, row by row in seq order, the link (prev_hash is the previous row's hash) and then the
content (row_hash is the hash of the row). Anchors from the file, Redis or an exported file then catch
what a consistent chain cannot show: a truncated tail, a rolled-back file, a re-hashed history.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import chain
from ledger.anchors import anchor_signed
from ledger.errors import LedgerNotFound
from ledger.signing import signature_ok

EDITED, DELETED, INSERTED, BROKEN, TRUNCATED, FORGED, REWRITTEN = (
    "edited",
    "deleted",
    "inserted",
    "broken_link",
    "truncated",
    "forged_anchor",
    "rewritten",
)


@dataclass
class VerifyReport:
    """The outcome of a verification: ok, or the first problem and the row it concerns."""

    ok: bool = True
    rows: int = 0
    head_seq: int = 0
    head_hash: str = chain.GENESIS_HASH
    problem: str | None = None
    bad_seq: int | None = None
    bad_event_id: str | None = None
    detail: str = ""
    anchors_checked: int = 0
    latest_anchor: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def fail(self, problem: str, seq: int | None, detail: str, event_id: str | None = None) -> VerifyReport:
        """Record the first problem (later ones are not reported)."""
        if self.ok:
            self.ok, self.problem, self.bad_seq, self.bad_event_id, self.detail = (
                False,
                problem,
                seq,
                event_id,
                detail,
            )
        return self


def open_read_only(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to an existing ledger file (never creates one)."""
    file = Path(path)
    if not file.is_file():
        raise LedgerNotFound(str(file))
    conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    return conn


def verify_ledger(
    path: str | os.PathLike[str],
    public_key: Ed25519PublicKey | None = None,
    extra_anchors: Iterable[dict[str, Any]] = (),
) -> VerifyReport:
    """Verify the ledger file at `path` (read-only), with anchors from elsewhere (Redis, an export) too."""
    conn = open_read_only(path)
    try:
        conn.execute("BEGIN")  # one consistent snapshot while the writer keeps appending
        report = VerifyReport()
        anchors = [dict(r) for r in conn.execute("SELECT * FROM anchors ORDER BY anchor_id")]
        anchors += list(extra_anchors)
        wanted = {int(a.get("head_seq", 0)) for a in anchors}
        positions = _walk(conn, report, public_key, wanted)
        _check_triggers(conn, report)
        conn.execute("COMMIT")
    finally:
        conn.close()
    for anchor in anchors:
        _check_anchor(anchor, positions, report, public_key)
    return report


def _walk(
    conn: sqlite3.Connection, report: VerifyReport, key: Ed25519PublicKey | None, wanted: set[int]
) -> dict[int, tuple[int, str]]:
    """Check every row's link and hash; returns {seq: (position, row_hash)} of the anchored rows (and the
    start of the walk)."""
    cut = conn.execute("SELECT * FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
    start_seq, start_hash, position = 0, chain.GENESIS_HASH, 0
    if cut is not None:
        start_seq, start_hash, position = cut["through_seq"], cut["through_hash"], cut["total_rows"]
        _check_checkpoint(dict(cut), report, key)
    positions: dict[int, tuple[int, str]] = {start_seq: (position, start_hash)}
    # The last two (seq, hash) pairs: an inserted row shows as a link that skips it.
    before: tuple[int, str] | None = None
    prev_seq, prev_hash = start_seq, start_hash
    for raw in conn.execute("SELECT * FROM events ORDER BY seq"):
        row = dict(raw)
        seq = row["seq"]
        if report.ok and row["prev_hash"] != prev_hash:
            _broken_link(report, row, prev_seq, before)
        if report.ok and chain.row_hash(row) != row["row_hash"]:
            report.fail(EDITED, seq, f"row {seq} does not match its hash (edited)", row["event_id"])
        position += 1
        if seq in wanted:
            positions[seq] = (position, row["row_hash"])
        before, prev_seq, prev_hash = (prev_seq, prev_hash), seq, row["row_hash"]
    report.rows, report.head_seq, report.head_hash = position, prev_seq, prev_hash
    return positions


def _broken_link(
    report: VerifyReport, row: dict[str, Any], prev_seq: int, before: tuple[int, str] | None
) -> None:
    """Name what a broken link means: the previous row was inserted, or rows before this one are gone."""
    seq = row["seq"]
    if before is not None and row["prev_hash"] == before[1]:
        report.fail(INSERTED, prev_seq, f"row {prev_seq} is not part of the chain (inserted)")
    elif seq != prev_seq + 1:
        missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
        report.fail(DELETED, prev_seq + 1, f"row {missing} missing before row {seq} (deleted)")
    else:
        report.fail(
            BROKEN,
            seq,
            f"row {seq} does not link to row {prev_seq} (a row before it was altered and re-hashed, "
            "or deleted and the rest renumbered)",
            row["event_id"],
        )


def _check_anchor(
    anchor: dict[str, Any],
    positions: dict[int, tuple[int, str]],
    report: VerifyReport,
    key: Ed25519PublicKey | None,
) -> None:
    """An anchor must be signed by the key, and the chain must still hold its head at its position."""
    report.anchors_checked += 1
    latest = report.latest_anchor
    if latest is None or anchor.get("head_seq", 0) >= latest.get("head_seq", 0):
        report.latest_anchor = anchor
    seq = int(anchor.get("head_seq", 0))
    if key is not None and not anchor_signed(anchor, key):
        report.fail(FORGED, seq, f"anchor of row {seq} is not signed by the ledger key")
        return
    if seq > report.head_seq:
        report.fail(
            TRUNCATED,
            report.head_seq + 1,
            f"rows after {report.head_seq} missing: an anchor of {anchor.get('created_at')} covers "
            f"{anchor.get('row_count')} rows up to row {seq} (truncated or rolled back)",
        )
        return
    found = positions.get(seq)
    if found is None:
        if seq > min(positions):  # not archived, so it should be here
            report.fail(DELETED, seq, f"anchored row {seq} is missing (deleted)")
        return
    position, row_hash = found
    if row_hash != anchor.get("head_hash"):
        report.fail(REWRITTEN, seq, f"row {seq} differs from its signed anchor (history rewritten)")
    elif position != anchor.get("row_count"):
        report.fail(
            REWRITTEN, seq, f"{position} rows up to row {seq}, the anchor counted {anchor.get('row_count')}"
        )


def _check_checkpoint(cut: dict[str, Any], report: VerifyReport, key: Ed25519PublicKey | None) -> None:
    """A compaction checkpoint must carry the ledger key's signature."""
    if key is None:
        return
    fields = {name: cut[name] for name in CHECKPOINT_FIELDS}
    if not signature_ok(key, fields, cut["signature"]):
        report.fail(FORGED, cut["through_seq"], "the compaction checkpoint is not signed by the ledger key")


CHECKPOINT_FIELDS: tuple[str, ...] = (
    "through_seq",
    "through_hash",
    "archived_rows",
    "total_rows",
    "archive_file",
    "archive_sha256",
    "created_at",
    "key_id",
)
"""What a checkpoint's signature covers."""


def _check_triggers(conn: sqlite3.Connection, report: VerifyReport) -> None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for trigger in ("events_no_update", "events_no_delete"):
        if trigger not in names:
            report.warnings.append(f"trigger {trigger} is missing (the file was opened for tampering)")
