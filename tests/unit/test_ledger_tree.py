"""The Merkle tree the store keeps in the file: the same tree as the reference over the rows, after batches
of any size, and proofs read from it (stored subtrees, re-hashed small ones) that verify."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from ledger import merkle, tree_store
from ledger.sqlite_store import LedgerStore
from tests.unit.ledger_events import done_event

ROWS = 100


async def test_the_stored_tree_is_the_tree_of_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await LedgerStore.open(path)
    try:
        sizes = [1, 2, 13, 16, 31, 37]  # batches ending inside and on subtree boundaries
        for size in sizes:
            await store.insert_events([done_event(uuid.uuid4().hex) for _ in range(size)])
        head = await store.tree_head()
    finally:
        await store.close()
    rows = sum(sizes)
    conn = sqlite3.connect(path)
    try:
        leaves = [tree_store.leaf_of(r[0]) for r in conn.execute("SELECT row_hash FROM events ORDER BY seq")]
        assert head.tree_size == rows and head.in_step and head.root == merkle.root_of(leaves)
        stored = {(level, index): node for level, index, node in tree_store.stored_nodes(conn)}
        assert stored and all(level >= tree_store.STORED_LEVEL for level, _ in stored)
        assert all(
            node == merkle.root_of(leaves[i << lv : (i + 1) << lv]) for (lv, i), node in stored.items()
        )
        nodes = tree_store.NodeReader(conn)
        for size in (rows, 37, 16):
            root = merkle.root_of(leaves[:size])
            for index in range(size):
                proof = merkle.inclusion_proof(nodes, index, size)
                assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for old in (1, 15, 16, 17, 64, rows):
            proof = merkle.consistency_proof(nodes, old, rows)
            assert merkle.verify_consistency(old, rows, merkle.root_of(leaves[:old]), head.root, proof)
    finally:
        conn.close()
