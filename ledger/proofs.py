"""Building proof bundles from the ledger file: one job's rows with their inclusion proofs against a signed
checkpoint, or a consistency proof that a later checkpoint extends an earlier one (O(log n) stored
subtrees per row). Checking one is ledger.bundle_check's: the bundle and the trusted key, nothing else.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from typing import Any

from ledger import merkle, signed_note, tree_store
from ledger.bundle_check import CONSISTENCY, FORMAT, INCLUSION
from ledger.errors import LedgerError
from ledger.verify import open_read_only


class ProofError(LedgerError):
    """No proof can be built (no checkpoint, rows archived, a job with no rows under the checkpoint)."""


def _b64(nodes: list[bytes]) -> list[str]:
    return [base64.b64encode(node).decode() for node in nodes]


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
