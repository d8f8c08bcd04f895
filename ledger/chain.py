"""The hash chain: what a row's hash covers, how the audit columns derive from an event, the chain head.

Each row's `row_hash` is the SHA-256 of its canonical content: every column in CHAIN_COLUMNS (the
previous row's hash included) as sorted-key JSON. Editing, deleting or inserting a row breaks a link.
From schema version 6 the payload enters the hash as its own SHA-256 (`sha256:HEX`), so a payload can be
redacted — replaced by a tombstone that keeps its digest — and the row hash, the chain, the Merkle tree
and every proof still hold.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from plangate_base import codec
from plangate_base.vocabulary import EventKind

GENESIS_HASH = "0" * 64
"""The prev_hash of the first row ever written."""

CHAIN_COLUMNS: tuple[str, ...] = (
    "seq",
    "event_id",
    "kind",
    "job_id",
    "agent_id",
    "tenant_id",
    "created_at",
    "attempt",
    "worker",
    "host",
    "decision",
    "reason",
    "model",
    "reviewer",
    "source",
    "outcome",
    "payload",
    "recorded_at",
    "schema_version",
    "policy_version",
    "prev_hash",
)
"""The columns a row's hash covers (all of them but row_hash). A new column added to the hash later must
depend on the row's schema_version, so rows written before it still verify."""

PAYLOAD_DIGEST_FROM = 6
"""The schema version from which a row hashes its payload's digest instead of its text."""

REDACTED_KEY = "redacted"

ROW_COLUMNS: tuple[str, ...] = (*CHAIN_COLUMNS, "row_hash")
_CHAIN_KEYS = frozenset(CHAIN_COLUMNS)

UNKNOWN_POLICY = "unknown"

# Kinds whose source is not a worker running a job.
_SOURCES: dict[str, str] = {
    EventKind.SUBMITTED: "producer",
    EventKind.REVIEW_APPROVED: "reviewer",
    EventKind.REVIEW_REJECTED: "reviewer",
    EventKind.REVOKED: "operator",
    EventKind.RESTORED: "operator",
    EventKind.BUDGET_RESET: "operator",
    EventKind.AGENT_SAVED: "operator",
    EventKind.KEY_ISSUED: "operator",
    EventKind.TOKEN_REVOKED: "operator",
    EventKind.REVIEWER_SAVED: "operator",
    EventKind.VOCABULARY_EXTENDED: "operator",
    EventKind.MALFORMED: "ledger",
    EventKind.WEBHOOK_DELIVERED: "webhooks",
    EventKind.LOST: "ledger",
    EventKind.REDACTED: "operator",
}


def row_hash(row: dict[str, Any]) -> str:
    """The SHA-256 (hex) of a row's canonical text: its chain columns as compact sorted-key JSON, UTF-8."""
    return hashlib.sha256(codec.canonical_bytes(_chain_content(row))).hexdigest()


def _chain_content(row: dict[str, Any]) -> dict[str, Any]:
    payload = row.get("payload")
    if payload is not None and not isinstance(payload, str):  # an exported row: its payload parsed
        row = {**row, "payload": codec.dumps(payload)}  # (the writer stored exactly this text)
    if (row.get("schema_version") or 0) >= PAYLOAD_DIGEST_FROM:
        content = {name: row.get(name) for name in CHAIN_COLUMNS}
        content["payload"] = "sha256:" + payload_digest(row.get("payload") or "")
        return content
    if row.keys() == _CHAIN_KEYS:  # a row being sealed: exactly its chain columns (no copy needed)
        return row
    return {name: row.get(name) for name in CHAIN_COLUMNS}


def payload_digest(text: str) -> str:
    """The SHA-256 (hex) of a payload's text; of a tombstone, the digest it keeps of the redacted text."""
    kept = tombstone_of(text)
    if kept is not None:
        return kept["sha256"]
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tombstone(digest: str, redaction_event_id: str) -> str:
    """The payload text that replaces a redacted one: its digest and the redaction event that did it."""
    return codec.dumps({REDACTED_KEY: {"sha256": digest, "by": redaction_event_id}})


def tombstone_of(text: str | None) -> dict[str, str] | None:
    """{"sha256", "by"} of a tombstone payload, or None for any other payload."""
    if not text or not text.startswith('{"' + REDACTED_KEY + '"'):
        return None
    try:
        value = codec.loads(text)
    except ValueError:
        return None
    kept = value.get(REDACTED_KEY) if isinstance(value, dict) and len(value) == 1 else None
    if (
        isinstance(kept, dict)
        and set(kept) == {"sha256", "by"}
        and all(isinstance(v, str) for v in kept.values())
    ):
        return kept
    return None


def audit_columns(event: dict[str, Any]) -> dict[str, Any]:
    """The columns derived from an event for an auditor: host, human reviewer, source and outcome."""
    payload = event.get("payload")
    fields = payload if isinstance(payload, dict) else {}
    worker = event.get("worker")
    reviewer = fields.get("reviewer") or fields.get("by")
    kind = event.get("kind")
    return {
        "host": worker.rsplit(":", 1)[0] if isinstance(worker, str) and worker else None,
        "reviewer": reviewer if isinstance(reviewer, str) else None,
        "source": _SOURCES.get(str(kind), "worker"),
        "outcome": event.get("decision") or event.get("reason") or kind,
    }


def seal(row: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """Link a complete row to its predecessor: set prev_hash and row_hash (returns the same dict)."""
    row["prev_hash"] = prev_hash
    row["row_hash"] = row_hash(row)
    return row


def read_head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, row_hash) of the chain head: the last row, else the last compaction checkpoint, else genesis."""
    last = conn.execute("SELECT seq, row_hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if last is not None:
        return int(last[0]), str(last[1])
    cut = conn.execute(
        "SELECT through_seq, through_hash FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
    ).fetchone()
    if cut is not None:
        return int(cut[0]), str(cut[1])
    return 0, GENESIS_HASH


def backfill(conn: sqlite3.Connection) -> int:
    """Fill the audit columns and seal rows written before the chain existed, in seq order (a migration step).

    Runs inside the migration's transaction; returns how many rows it sealed."""
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM events WHERE row_hash IS NULL ORDER BY seq")]
        prev = conn.execute(
            "SELECT row_hash FROM events WHERE row_hash IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.row_factory = None
    prev_hash = prev[0] if prev else GENESIS_HASH
    for row in rows:
        payload = codec.loads(row["payload"]) if row["payload"] else {}
        row.update(audit_columns({**row, "payload": payload}))
        row["schema_version"] = 1
        row["policy_version"] = UNKNOWN_POLICY
        seal(row, prev_hash)
        conn.execute(
            "UPDATE events SET host = ?, reviewer = ?, source = ?, outcome = ?, schema_version = ?,"
            " policy_version = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
            (
                row["host"],
                row["reviewer"],
                row["source"],
                row["outcome"],
                row["schema_version"],
                row["policy_version"],
                row["prev_hash"],
                row["row_hash"],
                row["seq"],
            ),
        )
        prev_hash = row["row_hash"]
    return len(rows)
