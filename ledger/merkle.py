"""RFC 6962 (RFC 9162 section 2.1) Merkle tree hashing: leaf and node hashes, the compact range the writer
keeps (O(log n) per appended row), inclusion and consistency proofs and their verification.

Pure functions over bytes: a proof is built from a `NodeSource` (the hash of any perfect subtree, read
from the store) and checked with nothing but the proof, the leaf and the signed root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: the SHA-256 of no bytes."""

NodeSource = Callable[[int, int], bytes]
"""`get(level, index)`: the hash of the perfect subtree of 2**level leaves from leaf index * 2**level."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): the RFC's split of D[n] into D[0:k] and D[k:n]."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes, by the RFC's recursive definition (the reference, for tests)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split_point(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def frontier_levels(size: int) -> list[int]:
    """The levels of the perfect subtrees a tree of `size` leaves is made of, left to right (its set bits)."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


class CompactRange:
    """The right edge of the tree: one hash per perfect subtree of the first `size` leaves (largest first).

    Appending a leaf merges equal-sized subtrees (amortised two hashes); the root folds the frontier from
    the right. This is all the writer keeps to extend the tree and sign its root."""

    __slots__ = ("frontier", "size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if len(frontier) != len(frontier_levels(size)):
            raise ValueError(
                f"a tree of {size} leaves has {size.bit_count()} frontier hashes, not {len(frontier)}"
            )
        self.size = size
        self.frontier = list(frontier)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the perfect subtrees it completed as (level, index, hash)."""
        completed: list[tuple[int, int, bytes]] = []
        node, level, index = leaf, 0, self.size
        # Each trailing set bit of the old size is a subtree of the same height to merge with.
        size = self.size
        while size & 1:
            node = node_hash(self.frontier.pop(), node)
            level, index, size = level + 1, index >> 1, size >> 1
            completed.append((level, index, node))
        self.frontier.append(node)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """The tree head (MTH) of the leaves appended so far."""
        if not self.frontier:
            return EMPTY_ROOT
        node = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            node = node_hash(left, node)
        return node

    def to_bytes(self) -> bytes:
        """The frontier hashes concatenated (the size says how many there are)."""
        return b"".join(self.frontier)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        """The compact range stored with `to_bytes`."""
        return cls(size, [blob[i : i + 32] for i in range(0, len(blob), 32)])


def range_hash(get: NodeSource, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a range the RFC's recursion produces (lo aligned to the largest power of two that
    fits), from perfect subtrees only: O(log n) lookups."""
    n = hi - lo
    if n & (n - 1) == 0:  # a perfect subtree
        level = n.bit_length() - 1
        return get(level, lo >> level)
    k = split_point(n)
    return node_hash(range_hash(get, lo, lo + k), range_hash(get, lo + k, hi))


def inclusion_proof(get: NodeSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 section 2.1.1, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root collecting siblings, then reverse to leaf-to-root order.
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(get, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(get: NodeSource, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 6962 section 2.1.2."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new} leaves")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    lo, hi, complete = 0, new, True
    m = old
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(range_hash(get, lo, hi))
            break
        k = split_point(n)
        if m <= k:
            proof.append(range_hash(get, lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(get, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2), or None when it cannot be one."""
    if not 0 <= index < size:
        return None
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return node if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows the leaf hash at `index` in the tree of `size` leaves with head `root`."""
    return root_from_inclusion(leaf, index, size, proof) == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of `new` leaves extends the tree of `old` (RFC 9162 2.1.4.2)."""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof  # every tree extends the empty one
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # the old tree is a perfect subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
