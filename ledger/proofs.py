"""Proof bundles an auditor checks offline: one job's rows with their inclusion proofs against a signed
checkpoint, or a consistency proof that a later checkpoint extends an earlier one.

Building a bundle reads the ledger file (O(log n) stored subtrees per row); checking one needs only the
bundle and the trusted public key: no database, no Redis, O(log n) hashes per row.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import chain, merkle, signed_note, tree_store
from ledger.errors import LedgerError
from ledger.verify import open_read_only

FORMAT = "plangate-ledger-proof/1"
INCLUSION, CONSISTENCY = "inclusion", "consistency"


class ProofError(LedgerError):
    """No proof can be built (no checkpoint, rows archived, a job with no rows under the checkpoint)."""


def _b64(nodes: list[bytes]) -> list[str]:
    return [base64.b64encode(node).decode() for node in nodes]


def _unb64(nodes: list[str]) -> list[bytes]:
    return [base64.b64decode(node, validate=True) for node in nodes]


def latest_checkpoint(conn: sqlite3.Connection) -> str:
    """The latest signed checkpoint note kept in the file."""
    row = conn.execute("SELECT note FROM tree_checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
    if row is None:
        raise ProofError("the ledger has no signed checkpoint yet (the writer signs one every interval)")
    return str(row[0])


def covered_by_latest(path: str | os.PathLike[str]) -> tuple[str | None, int | None]:
    """(the latest signed checkpoint note, the last row it covers); (None, None) when there is none."""
    conn = open_read_only(path)
    try:
        try:
            note = latest_checkpoint(conn)
        except ProofError:
            return None, None
        base, _tree = tree_store.read_state(conn)
    finally:
        conn.close()
    return note, base + signed_note.unverified_checkpoint(note).size


def prove_job(path: str | os.PathLike[str], job_id: str, checkpoint: str | None = None) -> dict[str, Any]:
    """The inclusion bundle of a job's rows under `checkpoint` (default the file's latest)."""
    conn = open_read_only(path)
    try:
        conn.execute("BEGIN")
        note = checkpoint or latest_checkpoint(conn)
        head = signed_note.unverified_checkpoint(note)
        nodes = tree_store.NodeReader(conn)
        last_seq = nodes.base_seq + head.size
        rows = [
            dict(r) for r in conn.execute("SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
        ]
        conn.execute("COMMIT")
        covered = [r for r in rows if nodes.base_seq < r["seq"] <= last_seq]
        if not covered:
            raise ProofError(f"job {job_id} has no rows under the checkpoint of {head.size} rows")
        entries = []
        for row in covered:
            index = nodes.leaf_index(row["seq"])
            proof = merkle.inclusion_proof(nodes, index, head.size)
            entries.append({"row": row, "leaf_index": index, "proof": _b64(proof)})
    finally:
        conn.close()
    return {
        "format": FORMAT,
        "kind": INCLUSION,
        "job_id": job_id,
        "checkpoint": note,
        "rows": entries,
        "newer_rows": len(rows) - len(covered),
    }


def prove_consistency(path: str | os.PathLike[str], old: str, new: str | None = None) -> dict[str, Any]:
    """The bundle proving that checkpoint `new` (default the file's latest) extends checkpoint `old`."""
    conn = open_read_only(path)
    try:
        conn.execute("BEGIN")
        new_note = new or latest_checkpoint(conn)
        first, second = signed_note.unverified_checkpoint(old), signed_note.unverified_checkpoint(new_note)
        if first.size > second.size:
            raise ProofError(f"the old checkpoint ({first.size} rows) is larger than the new ({second.size})")
        proof = merkle.consistency_proof(tree_store.NodeReader(conn), first.size, second.size)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"format": FORMAT, "kind": CONSISTENCY, "old": old, "new": new_note, "proof": _b64(proof)}


@dataclass
class BundleReport:
    """What checking a bundle found: ok, the problem, and what the bundle proved."""

    ok: bool = True
    kind: str = ""
    problem: str = ""
    tree_size: int = 0
    job_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    old_size: int = 0

    def fail(self, problem: str) -> BundleReport:
        if self.ok:
            self.ok, self.problem = False, problem
        return self


def verify_bundle(bundle: dict[str, Any], key: Ed25519PublicKey, key_name: str | None = None) -> BundleReport:
    """Check a bundle with the trusted key alone: the checkpoint signatures, then every proof."""
    report = BundleReport(kind=str(bundle.get("kind", "")))
    if bundle.get("format") != FORMAT:
        return report.fail(f"not a {FORMAT} bundle")
    try:
        if report.kind == INCLUSION:
            _inclusion(bundle, key, key_name, report)
        elif report.kind == CONSISTENCY:
            _consistency(bundle, key, key_name, report)
        else:
            report.fail(f"unknown bundle kind {report.kind!r}")
    except (signed_note.NoteError, KeyError, TypeError, ValueError) as exc:
        report.fail(
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, signed_note.NoteError) else str(exc)
        )
    return report


def _signed(note: str, key: Ed25519PublicKey, key_name: str | None) -> signed_note.Checkpoint:
    name = key_name or signed_note.unverified_checkpoint(note).origin
    return signed_note.verified_checkpoint(note, name, key)


def _inclusion(bundle: dict[str, Any], key: Ed25519PublicKey, name: str | None, report: BundleReport) -> None:
    head = _signed(bundle["checkpoint"], key, name)
    report.tree_size, report.job_id = head.size, bundle["job_id"]
    if not bundle["rows"]:
        report.fail("the bundle holds no rows")
    for entry in bundle["rows"]:
        row, index = entry["row"], int(entry["leaf_index"])
        if row.get("job_id") != report.job_id:
            report.fail(f"row {row.get('seq')} is of job {row.get('job_id')!r}, not {report.job_id!r}")
            return
        if chain.row_hash(row) != row.get("row_hash"):
            report.fail(f"row {row.get('seq')} does not match its hash (edited)")
            return
        leaf = tree_store.leaf_of(row["row_hash"])
        if not merkle.verify_inclusion(leaf, index, head.size, _unb64(entry["proof"]), head.root):
            report.fail(f"row {row.get('seq')} is not in the signed tree of {head.size} rows")
            return
        report.rows.append(row)


def _consistency(
    bundle: dict[str, Any], key: Ed25519PublicKey, name: str | None, report: BundleReport
) -> None:
    old, new = _signed(bundle["old"], key, name), _signed(bundle["new"], key, name)
    report.old_size, report.tree_size = old.size, new.size
    if not merkle.verify_consistency(old.size, new.size, old.root, new.root, _unb64(bundle["proof"])):
        report.fail(f"the tree of {new.size} rows does not extend the tree of {old.size} rows")
