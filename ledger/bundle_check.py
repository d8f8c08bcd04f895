"""Checking a proof bundle with the trusted public key alone: no database, no Redis, O(log n) hashes per
row. Imports only the hashing and the note format, so an auditor's `python -m ledger.audit` starts light.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import chain, merkle, signed_note, tree_store

FORMAT = "plangate-ledger-proof/1"
INCLUSION, CONSISTENCY = "inclusion", "consistency"


def _unb64(nodes: list[str]) -> list[bytes]:
    return [base64.b64decode(node, validate=True) for node in nodes]


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
