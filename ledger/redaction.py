"""Redaction that keeps the proofs: a `redacted` event names rows whose payloads are replaced by tombstones
that keep each payload's SHA-256, so the row hashes, the chain, the Merkle tree, the signed checkpoints and
every inclusion proof still hold. The writer applies it in the transaction that records the event; who
redacted what and why is that event's row.

Rows written before schema version 6 hash their payload's text, so they cannot be redacted this way.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from ledger import chain
from ledger.projections import SearchRows, project
from ledger.queries import normalize_time
from plangate_base import codec
from plangate_base.vocabulary import EventKind

_NOT_REDACTABLE = (EventKind.REDACTED.value,)


def plan(
    path: str | os.PathLike[str],
    *,
    job_id: str | None = None,
    before: str | None = None,
    tenant: str | None = None,
) -> tuple[list[int], int]:
    """(seqs to redact, rows that match but cannot be: written before schema version 6)."""
    if job_id is None and before is None:
        raise ValueError("redact a job, or the rows before a date")
    terms, params = ["kind NOT IN (?)"], list(_NOT_REDACTABLE)
    if job_id is not None:
        terms.append("job_id = ?")
        params.append(job_id)
    if before is not None:
        terms.append("created_at < ?")
        params.append(normalize_time(before))
    if tenant is not None:
        terms.append("tenant_id = ?")
        params.append(tenant)
    from ledger.verify import open_read_only  # (verify checks the tombstones with this module)

    conn = open_read_only(path)
    try:
        rows = conn.execute(
            f"SELECT seq, schema_version, payload FROM events WHERE {' AND '.join(terms)} ORDER BY seq",
            params,
        ).fetchall()
    finally:
        conn.close()
    wanted = [
        r[0] for r in rows if (r[1] or 0) >= chain.PAYLOAD_DIGEST_FROM and chain.tombstone_of(r[2]) is None
    ]
    old = sum(1 for r in rows if (r[1] or 0) < chain.PAYLOAD_DIGEST_FROM)
    return wanted, old


def apply(conn: sqlite3.Connection, event: dict[str, Any]) -> int:
    """Tombstone the rows a just-recorded `redacted` event names and re-project their jobs (inside the
    writer's transaction); returns how many payloads it replaced."""
    payload = event.get("payload")
    seqs = payload.get("seqs") if isinstance(payload, dict) else None
    if not isinstance(seqs, list) or not seqs:
        return 0
    triggers = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_no_update'"
    ).fetchall()
    for name, _sql in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    replaced, jobs = 0, set()
    try:
        for seq in seqs:
            row = conn.execute(
                "SELECT payload, schema_version, job_id, kind FROM events WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None or (row[1] or 0) < chain.PAYLOAD_DIGEST_FROM or row[3] in _NOT_REDACTABLE:
                continue
            if chain.tombstone_of(row[0]) is not None:
                continue
            text = chain.tombstone(chain.payload_digest(row[0]), event["event_id"])
            conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (text, seq))
            replaced += 1
            if row[2]:
                jobs.add(row[2])
    finally:
        for _name, sql in triggers:
            conn.execute(sql)
    reproject(conn, jobs)
    return replaced


def reproject(conn: sqlite3.Connection, job_ids: Iterable[str]) -> None:
    """Recompute the jobs rows and search rows of these jobs from their (now redacted) events."""
    for job_id in sorted(set(job_ids)):
        conn.execute("DELETE FROM job_search WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        search = SearchRows()
        cursor = conn.execute("SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
        names = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            event = dict(zip(names, values, strict=True))
            text = event["payload"]
            event["payload"] = codec.loads(text) if text else {}
            project(conn, event, text, search, counts=False)
        search.flush(conn)


def check(conn: sqlite3.Connection) -> str | None:
    """Every tombstone must be one a `redacted` row ordered (after it, naming it); the first that is not."""
    ordered: dict[str, tuple[int, set[int]]] = {}
    for seq, event_id, payload in conn.execute(
        "SELECT seq, event_id, payload FROM events WHERE kind = ?", (EventKind.REDACTED.value,)
    ):
        named = codec.loads(payload).get("seqs") if payload else None
        ordered[event_id] = (seq, set(named) if isinstance(named, list) else set())
    for seq, payload in conn.execute(
        "SELECT seq, payload FROM events WHERE payload LIKE ? ORDER BY seq",
        ('{"' + chain.REDACTED_KEY + '"%',),
    ):
        kept = chain.tombstone_of(payload)
        if kept is None:
            continue
        by = ordered.get(kept["by"])
        if by is None or seq not in by[1] or by[0] <= seq:
            return f"row {seq} was redacted by no redaction row (payload replaced behind the ledger's back)"
    return None
