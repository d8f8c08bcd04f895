"""The hash chain against a real SQLite file: verify names the first edited, deleted, inserted or truncated
row (tampering done with plain sqlite3 after dropping the triggers, as an attacker would)."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import chain, tree_store
from ledger.anchors import make_anchor
from ledger.sqlite_store import LedgerStore
from ledger.verify import (
    DELETED,
    EDITED,
    FORGED,
    INSERTED,
    PROJECTION,
    REWRITTEN,
    TREE,
    TRUNCATED,
    verify_ledger,
)
from tests.unit.ledger_events import done_event

ROWS = 30


def a_done_event() -> dict[str, Any]:
    """A done event of a job of its own, recorded by worker host-a."""
    return done_event(uuid.uuid4().hex, worker="host-a:123")


@pytest.fixture
async def ledger(tmp_path: Path) -> Path:
    """A ledger of ROWS events written in three batches through the store."""
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path, policy_version="policy-7")
    try:
        for _ in range(3):
            await store.insert_events([a_done_event() for _ in range(ROWS // 3)])
    finally:
        await store.close()
    return path


def attacker(path: Path) -> sqlite3.Connection:
    """A plain connection with the append-only triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


def rebuild_tree(conn: sqlite3.Connection) -> None:
    """What a thorough attacker does after cutting or re-hashing rows: rebuild the stored Merkle tree."""
    conn.execute("BEGIN")
    tree_store.build(conn)
    conn.execute("COMMIT")


def rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]


async def test_untouched_ledger_verifies(ledger: Path) -> None:
    report = verify_ledger(ledger)
    assert report.ok, report.detail
    assert report.rows == ROWS and report.head_seq == ROWS
    assert report.warnings == []


async def test_rows_carry_the_audit_columns_and_link(ledger: Path) -> None:
    stored = rows(ledger)
    assert stored[0]["prev_hash"] == chain.GENESIS_HASH
    for before, row in itertools.pairwise(stored):
        assert row["prev_hash"] == before["row_hash"]
    first = stored[0]
    assert (first["host"], first["source"], first["outcome"]) == ("host-a", "worker", "EXECUTE")
    assert first["policy_version"] == "policy-7" and first["schema_version"] >= 2
    assert first["recorded_at"].endswith("Z")
    assert chain.row_hash(first) == first["row_hash"]


async def test_triggers_refuse_update_and_delete(ledger: Path) -> None:
    with sqlite3.connect(ledger) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET decision = 'SKIP' WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = 3")


async def test_edited_decision_is_named(ledger: Path) -> None:
    attacker(ledger).execute("UPDATE events SET decision = 'SKIP' WHERE seq = 12")
    report = verify_ledger(ledger)
    assert not report.ok
    assert (report.problem, report.bad_seq) == (EDITED, 12)
    assert report.warnings  # the dropped triggers are noticed too


async def test_deleted_row_is_named(ledger: Path) -> None:
    attacker(ledger).execute("DELETE FROM events WHERE seq = 7")
    report = verify_ledger(ledger)
    assert (report.ok, report.problem, report.bad_seq) == (False, DELETED, 7)


async def test_inserted_row_is_named(ledger: Path) -> None:
    """A careful attacker: renumbers the rows after 15 and inserts a well-hashed row linked to row 15."""
    conn = attacker(ledger)
    conn.execute("UPDATE events SET seq = -seq WHERE seq > 15")
    conn.execute("UPDATE events SET seq = 1 - seq WHERE seq < 0")
    forged = rows(ledger)[14] | {"seq": 16, "event_id": uuid.uuid4().hex, "decision": "SKIP"}
    chain.seal(forged, rows(ledger)[14]["row_hash"])
    columns = ", ".join(chain.ROW_COLUMNS)
    conn.execute(
        f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(chain.ROW_COLUMNS))})",
        tuple(forged[c] for c in chain.ROW_COLUMNS),
    )
    report = verify_ledger(ledger)
    assert (report.ok, report.problem, report.bad_seq) == (False, INSERTED, 16)


async def test_naively_appended_row_is_named(ledger: Path) -> None:
    conn = attacker(ledger)
    last = rows(ledger)[-1]
    fake = last | {"seq": ROWS + 1, "event_id": "fake", "row_hash": "f" * 64, "prev_hash": last["row_hash"]}
    columns = ", ".join(chain.ROW_COLUMNS)
    conn.execute(
        f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(chain.ROW_COLUMNS))})",
        tuple(fake[c] for c in chain.ROW_COLUMNS),
    )
    report = verify_ledger(ledger)
    assert (report.ok, report.bad_seq, report.bad_event_id) == (False, ROWS + 1, "fake")


async def test_truncated_tail_is_caught_by_an_anchor(ledger: Path) -> None:
    key = Ed25519PrivateKey.generate()
    head = rows(ledger)[-1]
    anchor = make_anchor(key, head["seq"], head["row_hash"], ROWS)
    conn = attacker(ledger)
    conn.execute("DELETE FROM events WHERE seq > 25")
    assert verify_ledger(ledger).problem == TREE  # the stored tree still has 30 leaves
    rebuild_tree(conn)
    assert verify_ledger(ledger).problem == PROJECTION  # jobs rows of the deleted events remain
    # The rest of the chain is consistent: only the anchor (here held off the file) tells.
    assert verify_ledger(ledger, projections=False).ok
    report = verify_ledger(ledger, key.public_key(), [anchor], projections=False)
    assert (report.ok, report.problem, report.bad_seq) == (False, TRUNCATED, 26)
    assert report.latest_anchor == anchor


async def test_rehashed_history_is_caught_by_the_signature(ledger: Path) -> None:
    """An attacker who recomputes every hash after an edit: the chain is consistent, the anchor is not."""
    key = Ed25519PrivateKey.generate()
    head = rows(ledger)[-1]
    anchor = make_anchor(key, head["seq"], head["row_hash"], ROWS)
    conn = attacker(ledger)
    prev = chain.GENESIS_HASH
    for row in rows(ledger):
        if row["seq"] == 5:
            row["decision"] = "SKIP"
        chain.seal(row, prev)
        conn.execute(
            "UPDATE events SET decision = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
            (row["decision"], row["prev_hash"], row["row_hash"], row["seq"]),
        )
        prev = row["row_hash"]
    assert verify_ledger(ledger).problem == TREE  # the stored tree is of the old rows
    rebuild_tree(conn)
    assert verify_ledger(ledger).problem == PROJECTION  # the jobs row still has the old decision
    assert verify_ledger(ledger, projections=False).ok  # the hash chain alone cannot tell
    report = verify_ledger(ledger, key.public_key(), [anchor], projections=False)
    assert (report.ok, report.problem, report.bad_seq) == (False, REWRITTEN, ROWS)
    # A forged anchor for the new head is refused without the private key.
    forged = make_anchor(Ed25519PrivateKey.generate(), ROWS, prev, ROWS)
    report = verify_ledger(ledger, key.public_key(), [forged], projections=False)
    assert (report.ok, report.problem) == (False, FORGED)
