"""`plangate ledger verify`: walk the hash chain, rebuild the Merkle tree, check both against the signed
anchors and checkpoints, name the first bad row.

The walk checks, row by row in seq order, the link (prev_hash is the previous row's hash) and then the
content (row_hash is the hash of the row), and grows the RFC 6962 tree over the rows. Anchors and
checkpoints from the file, Redis, the checkpoint sink or an exported file then catch what a consistent
chain cannot show: a truncated tail, a rolled-back or replaced file, a re-hashed history.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import chain, merkle, redaction, signed_note, tree_store
from ledger.anchors import anchor_signed
from ledger.errors import LedgerNotFound
from ledger.projection_check import check_projections
from ledger.signing import signature_ok
from plangate_base import clock

EDITED, DELETED, INSERTED, BROKEN, TRUNCATED, FORGED, REWRITTEN, UNSIGNED, TREE, PROJECTION = (
    "edited",
    "deleted",
    "inserted",
    "broken_link",
    "truncated",
    "forged_anchor",
    "rewritten",
    "unsigned",
    "tree_mismatch",
    "projection",
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
    tree_size: int = 0
    tree_root: str | None = None
    tree_start: int = 0  # the tree size where the file's rows begin (after a compaction cut)
    checkpoints_checked: int = 0
    signed_size: int = 0  # the largest tree size a checkpoint signed with the trusted key covers
    unsigned_rows: int = 0  # rows after it: not signed yet (the writer signs every interval), or forged
    jobs_checked: int = 0  # jobs rows (and their search rows) recomputed from the events and compared
    jobs_archived: int = 0  # jobs rows whose submitted event is archived: checked with the archive
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
    *,
    checkpoints: Iterable[str] = (),
    key_name: str | None = None,
    require_signed: bool = False,
    unsigned_grace_s: float | None = None,
    projections: bool = True,
) -> VerifyReport:
    """Verify the ledger file at `path` (read-only), with anchors and checkpoint notes from elsewhere
    (Redis, the checkpoint sink, an export) too.

    `key_name`: the name a trusted verifier key gives (checkpoints must be of that origin). `require_signed`
    (the operator's mode): a ledger with rows and no checkpoint signed by the key fails, and so do rows
    not covered by a signed checkpoint that were recorded more than `unsigned_grace_s` ago (the writer
    signs its head every interval and at shutdown: an older unsigned row was added behind its back, or the
    writer died or stopped writing)."""
    conn = open_read_only(path)
    try:
        conn.execute("BEGIN")  # one consistent snapshot while the writer keeps appending
        report = VerifyReport()
        anchors = [dict(r) for r in conn.execute("SELECT * FROM anchors ORDER BY anchor_id")]
        anchors += list(extra_anchors)
        notes = [r[0] for r in conn.execute("SELECT note FROM tree_checkpoints ORDER BY checkpoint_id")]
        notes += list(checkpoints)
        claimed = [_claimed(note, report) for note in notes]
        wanted = {int(a.get("head_seq", 0)) for a in anchors}
        sizes = {c.size for c in claimed if c is not None}
        positions, roots = _walk(conn, report, public_key, wanted, sizes)
        _check_triggers(conn, report)
        if report.ok:
            problem = redaction.check(conn)
            if problem is not None:
                report.fail(EDITED, None, problem)
        if projections and report.ok:
            _check_read_models(conn, report)
        conn.execute("COMMIT")
    finally:
        conn.close()
    for anchor in anchors:
        _check_anchor(anchor, positions, report, public_key)
    for note, checkpoint in zip(notes, claimed, strict=True):
        if checkpoint is not None:
            _check_note(note, checkpoint, roots, report, public_key, key_name)
    if public_key is not None:
        report.unsigned_rows = max(0, report.tree_size - report.signed_size)
        if require_signed and report.rows and report.checkpoints_checked and not report.signed_size:
            report.fail(UNSIGNED, None, "no checkpoint signed by the trusted key covers any row")
        elif require_signed and report.rows and not report.checkpoints_checked:
            report.fail(
                UNSIGNED, None, "the ledger has rows and no signed checkpoint (removed, or never signed)"
            )
        if report.unsigned_rows and require_signed:
            first = report.head_seq - report.unsigned_rows + 1
            if unsigned_grace_s is not None and report.ok:
                _check_unsigned_age(path, first, unsigned_grace_s, report)
            report.warnings.append(
                f"{report.unsigned_rows} rows from row {first} on are not covered by a signed checkpoint "
                "(signed at the next interval, or added behind the writer: see its plangate_ledger_diverged)"
            )
    return report


def _check_unsigned_age(
    path: str | os.PathLike[str], first: int, grace_s: float, report: VerifyReport
) -> None:
    conn = open_read_only(path)
    try:
        row = conn.execute("SELECT recorded_at FROM events WHERE seq = ?", (first,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return
    age = (clock.utcnow() - clock.parse_iso(row[0])).total_seconds()
    if age > grace_s:
        report.fail(
            UNSIGNED,
            first,
            f"rows from {first} on are not covered by a signed checkpoint {age:.0f} s after they were "
            f"recorded (more than {grace_s:.0f} s): added behind the writer (see plangate_ledger_diverged), "
            "or the writer is down; a writer that takes over signs what it wrote",
        )


def _check_read_models(conn: sqlite3.Connection, report: VerifyReport) -> None:
    """The jobs table and the search index must be what the events rows imply."""
    found = check_projections(conn)
    report.jobs_checked, report.jobs_archived = found.jobs_checked, found.unchecked
    if found.difference is not None:
        report.fail(PROJECTION, None, f"{found.difference} (the read model was edited)")


def _claimed(note: str, report: VerifyReport) -> signed_note.Checkpoint | None:
    """What a checkpoint note claims (signature checked later); a malformed note is a failure."""
    try:
        return signed_note.unverified_checkpoint(note)
    except signed_note.NoteError as exc:
        report.fail(FORGED, None, f"a checkpoint note is malformed: {exc}")
        return None


def _check_note(
    note: str,
    checkpoint: signed_note.Checkpoint,
    roots: dict[int, bytes],
    report: VerifyReport,
    key: Ed25519PublicKey | None,
    key_name: str | None,
) -> None:
    """A checkpoint must be signed by the key, and the tree rebuilt from the rows must have its root."""
    report.checkpoints_checked += 1
    if key is not None:
        try:
            signed_note.verified_checkpoint(note, key_name or checkpoint.origin, key)
        except signed_note.NoteError as exc:
            report.fail(FORGED, None, f"checkpoint of {checkpoint.size} rows: {exc}")
            return
    if checkpoint.size > report.tree_size:
        report.fail(
            TRUNCATED,
            report.head_seq + 1,
            f"a signed checkpoint covers {checkpoint.size} rows of the tree, the file has {report.tree_size} "
            "(truncated, rolled back or replaced)",
        )
        return
    root = roots.get(checkpoint.size)
    if root is None:
        if checkpoint.size >= report.tree_start:
            report.warnings.append(f"checkpoint of {checkpoint.size} rows not checked: its rows are archived")
        return  # (one of the archived rows: `verify ARCHIVE` checks it)
    if root != checkpoint.root:
        report.fail(
            REWRITTEN,
            None,
            f"the rows do not hash to the signed tree head of {checkpoint.size} rows (history rewritten or "
            "file replaced)",
        )
        return
    if key is not None:
        report.signed_size = max(report.signed_size, checkpoint.size)


def _walk(
    conn: sqlite3.Connection,
    report: VerifyReport,
    key: Ed25519PublicKey | None,
    wanted: set[int],
    sizes: set[int],
) -> tuple[dict[int, tuple[int, str]], dict[int, bytes]]:
    """Check every row's link and hash and rebuild the tree; returns {seq: (position, row_hash)} of the
    anchored rows (and the start of the walk), and {tree size: root} for the checkpointed sizes."""
    cut = conn.execute("SELECT * FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
    start_seq, start_hash, position = 0, chain.GENESIS_HASH, 0
    if cut is not None:
        start_seq, start_hash, position = cut["through_seq"], cut["through_hash"], cut["total_rows"]
        _check_checkpoint(dict(cut), report, key)
    positions: dict[int, tuple[int, str]] = {start_seq: (position, start_hash)}
    base_seq, stored = tree_store.read_state(conn)
    # The tree is rebuilt when the file holds its first leaf (a file compacted after the tree began
    # cannot be rebuilt here; its checkpoints are checked by verifying the archive first).
    tree: merkle.CompactRange | None = merkle.CompactRange() if base_seq == start_seq else None
    if tree is None and base_seq < start_seq:
        kept = conn.execute(
            "SELECT tree_size, frontier FROM merkle_cuts WHERE through_seq = ?", (start_seq,)
        ).fetchone()
        if kept is not None:
            tree = merkle.CompactRange.from_bytes(int(kept[0]), bytes(kept[1]))
    roots: dict[int, bytes] = {tree.size: tree.root()} if tree is not None else {}
    report.tree_start = tree.size if tree is not None else stored.size
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
        if tree is not None:
            tree.append(tree_store.leaf_of(row["row_hash"]))
            if tree.size in sizes:
                roots[tree.size] = tree.root()
        before, prev_seq, prev_hash = (prev_seq, prev_hash), seq, row["row_hash"]
    report.rows, report.head_seq, report.head_hash = position, prev_seq, prev_hash
    if tree is None:
        report.tree_size = stored.size
        report.warnings.append("the Merkle tree starts in the archive: its checkpoints are not rebuilt here")
    else:
        report.tree_size, report.tree_root = tree.size, tree.root().hex()
        if (stored.size, stored.root()) != (tree.size, tree.root()) and report.ok:
            report.fail(
                TREE,
                None,
                f"the stored Merkle tree ({stored.size} leaves) is not the tree of the rows ({tree.size})",
            )
    return positions, roots


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
