"""The Merkle tree kept in the ledger file: its compact range (extended in the writer's transaction, O(log n)
per row), its stored subtrees, and the node reads that inclusion and consistency proofs are built from."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from ledger import merkle
from ledger.errors import LedgerError

STORED_LEVEL = 4
"""Subtrees of 2**STORED_LEVEL leaves and up are stored; smaller ones are re-hashed from <= 16 rows."""

_INSERT_NODE = "INSERT OR REPLACE INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)"


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The chain head and the tree head of one moment: what a checkpoint signs."""

    head_seq: int
    head_hash: str
    tree_size: int
    root: bytes
    base_seq: int

    @property
    def in_step(self) -> bool:
        """Whether the tree covers exactly the chain (else rows were added without it)."""
        return self.base_seq + self.tree_size == self.head_seq


class TreeError(LedgerError):
    """The stored tree does not match the rows (tampered, or written without the tree)."""


def leaf_of(row_hash: str) -> bytes:
    """A row's leaf hash: SHA-256(0x00 || the 32 bytes of its row_hash)."""
    return merkle.leaf_hash(bytes.fromhex(row_hash))


def read_state(conn: sqlite3.Connection) -> tuple[int, merkle.CompactRange]:
    """(base_seq, compact range) as stored; an empty tree from seq 0 when none is."""
    row = conn.execute("SELECT base_seq, tree_size, frontier FROM merkle_state WHERE id = 1").fetchone()
    if row is None:
        return 0, merkle.CompactRange()
    return int(row[0]), merkle.CompactRange.from_bytes(int(row[1]), bytes(row[2]))


def write_state(conn: sqlite3.Connection, base_seq: int, tree: merkle.CompactRange) -> None:
    conn.execute(
        "INSERT INTO merkle_state (id, base_seq, tree_size, frontier) VALUES (1, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET tree_size = excluded.tree_size, frontier = excluded.frontier",
        (base_seq, tree.size, tree.to_bytes()),
    )


class TreeAppender:
    """Extends the stored tree by the rows of one batch (inside the batch's transaction)."""

    __slots__ = ("base_seq", "nodes", "tree")

    def __init__(self, conn: sqlite3.Connection, head_seq: int) -> None:
        self.base_seq, self.tree = read_state(conn)
        if self.base_seq + self.tree.size != head_seq:
            raise TreeError(
                f"the Merkle tree covers rows up to {self.base_seq + self.tree.size}, the chain ends at row "
                f"{head_seq}: rows were added without the tree"
            )
        self.nodes: list[tuple[int, int, bytes]] = []

    def add(self, row_hash: str) -> None:
        for node in self.tree.append(leaf_of(row_hash)):
            if node[0] >= STORED_LEVEL:
                self.nodes.append(node)

    def flush(self, conn: sqlite3.Connection) -> None:
        if self.nodes:
            conn.executemany(_INSERT_NODE, self.nodes)
            self.nodes = []
        write_state(conn, self.base_seq, self.tree)


def build(conn: sqlite3.Connection) -> int:
    """Fill the tree from the rows recorded so far (a migration step); returns how many leaves it has.

    A file compacted before the tree existed starts its tree after the last archived row."""
    cut = conn.execute("SELECT through_seq FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
    base = int(cut[0]) if cut is not None else 0
    conn.execute("DELETE FROM merkle_state")
    conn.execute("DELETE FROM merkle_nodes")
    write_state(conn, base, merkle.CompactRange())
    appender = TreeAppender(conn, base)
    expected = base + 1
    for seq, row_hash in conn.execute("SELECT seq, row_hash FROM events ORDER BY seq"):
        if seq != expected:
            raise TreeError(f"row {expected} is missing (next is row {seq}); verify the ledger first")
        appender.add(row_hash)
        expected += 1
    appender.flush(conn)
    return appender.tree.size


class NodeReader:
    """Perfect subtree hashes read from the file: stored nodes, or re-hashed from the rows below."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.base_seq, self.state = read_state(conn)

    def __call__(self, level: int, index: int) -> bytes:
        if level >= STORED_LEVEL:
            row = self.conn.execute(
                "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
            if row is None:
                raise TreeError(f"Merkle node ({level}, {index}) is not stored")
            return bytes(row[0])
        first = self.base_seq + (index << level) + 1
        count = 1 << level
        hashes = [
            leaf_of(r[0])
            for r in self.conn.execute(
                "SELECT row_hash FROM events WHERE seq >= ? AND seq < ? ORDER BY seq", (first, first + count)
            )
        ]
        if len(hashes) != count:
            raise TreeError(f"rows {first}..{first + count - 1} are not all in this file (archived?)")
        return merkle.root_of(hashes)

    def leaf_index(self, seq: int) -> int:
        """The leaf index of the row at `seq`."""
        return seq - self.base_seq - 1


def stored_nodes(conn: sqlite3.Connection) -> Iterable[tuple[int, int, bytes]]:
    """Every stored subtree, for verify to compare with the tree it recomputes."""
    for level, idx, node in conn.execute("SELECT level, idx, hash FROM merkle_nodes"):
        yield int(level), int(idx), bytes(node)


def range_at(conn: sqlite3.Connection, through_seq: int) -> merkle.CompactRange | None:
    """The compact range of the tree up to row `through_seq` (a compaction cut): kept at the cut, or
    rebuilt from the rows; None when the rows are not all here."""
    kept = conn.execute(
        "SELECT tree_size, frontier FROM merkle_cuts WHERE through_seq = ?", (through_seq,)
    ).fetchone()
    if kept is not None:
        return merkle.CompactRange.from_bytes(int(kept[0]), bytes(kept[1]))
    base, _state = read_state(conn)
    tree = merkle.CompactRange()
    expected = base + 1
    for seq, row_hash in conn.execute(
        "SELECT seq, row_hash FROM events WHERE seq > ? AND seq <= ? ORDER BY seq", (base, through_seq)
    ):
        if seq != expected:
            return None
        tree.append(leaf_of(row_hash))
        expected += 1
    return tree if expected == through_seq + 1 else None


def keep_cut(conn: sqlite3.Connection, through_seq: int, tree: merkle.CompactRange) -> None:
    """Record the compact range at a compaction cut (inside the cut's transaction)."""
    conn.execute(
        "INSERT OR REPLACE INTO merkle_cuts (through_seq, tree_size, frontier) VALUES (?, ?, ?)",
        (through_seq, tree.size, tree.to_bytes()),
    )
