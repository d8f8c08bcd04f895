"""The Merkle tree against the published RFC 6962 / Certificate Transparency known answers.

The vectors are data copied from google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
(kInputs, kSHA256Roots, kSHA256Paths, kSHA256Proofs): the eight reference leaves, the tree head after each
leaf, audit paths and consistency proofs. Their leaf numbers there are 1-based; here indexes are 0-based.
"""

from __future__ import annotations

import pytest

from ledger import merkle

INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
EMPTY_TREE = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf, tree size, path), leaf 1-based as published
PATHS = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (1, 1, []),
]
# (old size, new size, proof)
PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

LEAVES = [merkle.leaf_hash(bytes.fromhex(data)) for data in INPUTS]


def node_source(leaves: list[bytes]) -> merkle.NodeSource:
    """Perfect subtree hashes computed from the leaves (what the store reads from its tables)."""

    def get(level: int, index: int) -> bytes:
        return merkle.root_of(leaves[index << level : (index + 1) << level])

    return get


def hexes(nodes: list[bytes]) -> list[str]:
    return [node.hex() for node in nodes]


def test_empty_tree_and_roots_leaf_by_leaf() -> None:
    tree = merkle.CompactRange()
    assert tree.root().hex() == EMPTY_TREE == merkle.root_of([]).hex()
    for i, leaf in enumerate(LEAVES):
        tree.append(leaf)
        assert tree.root().hex() == ROOTS[i] == merkle.root_of(LEAVES[: i + 1]).hex()
        assert merkle.CompactRange.from_bytes(tree.size, tree.to_bytes()).root() == tree.root()


def test_compact_range_reports_the_subtrees_it_completes() -> None:
    tree, completed = merkle.CompactRange(), {}
    for leaf in LEAVES:
        for level, index, node in tree.append(leaf):
            completed[(level, index)] = node
    get = node_source(LEAVES)
    assert completed == {key: get(*key) for key in [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (3, 0)]}


@pytest.mark.parametrize(("leaf", "size", "path"), PATHS)
def test_inclusion_vectors(leaf: int, size: int, path: list[str]) -> None:
    get = node_source(LEAVES[:size])
    assert hexes(merkle.inclusion_proof(get, leaf - 1, size)) == path
    root = bytes.fromhex(ROOTS[size - 1])
    proof = [bytes.fromhex(p) for p in path]
    assert merkle.verify_inclusion(LEAVES[leaf - 1], leaf - 1, size, proof, root)
    # the verifier's negative cases of the same test file: wrong index, size, leaf, root, path
    wrong = merkle.leaf_hash(b"WrongLeaf")
    assert not merkle.verify_inclusion(wrong, leaf - 1, size, proof, root)
    assert not merkle.verify_inclusion(LEAVES[leaf - 1], leaf - 1, size, proof, bytes.fromhex(EMPTY_TREE))
    assert not merkle.verify_inclusion(LEAVES[leaf - 1], leaf - 1, size * 2, proof, root)
    assert not merkle.verify_inclusion(LEAVES[leaf - 1], leaf, size, proof, root)
    assert not merkle.verify_inclusion(LEAVES[leaf - 1], leaf - 1, size, [*proof, root], root)
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = bytes.fromhex(EMPTY_TREE)
        assert not merkle.verify_inclusion(LEAVES[leaf - 1], leaf - 1, size, bad, root)


@pytest.mark.parametrize(("old", "new", "proof"), PROOFS)
def test_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    get = node_source(LEAVES[:new])
    assert hexes(merkle.consistency_proof(get, old, new)) == proof
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    nodes = [bytes.fromhex(p) for p in proof]
    assert merkle.verify_consistency(old, new, old_root, new_root, nodes)
    if not nodes:
        return
    assert not merkle.verify_consistency(old, new, new_root, old_root, nodes)  # swapped roots
    assert not merkle.verify_consistency(old, new, old_root, new_root, [])
    assert not merkle.verify_consistency(old, new * 2, old_root, new_root, nodes)
    assert not merkle.verify_consistency(old, new, old_root, new_root, nodes[:-1])
    for j in range(len(nodes)):
        bad = list(nodes)
        bad[j] = bytes.fromhex(EMPTY_TREE)
        assert not merkle.verify_consistency(old, new, old_root, new_root, bad)


def test_trivial_consistency() -> None:
    empty = bytes.fromhex(EMPTY_TREE)
    assert merkle.verify_consistency(0, 0, empty, empty, [])
    assert merkle.verify_consistency(0, 5, empty, bytes.fromhex(ROOTS[4]), [])
    assert not merkle.verify_consistency(1, 0, empty, empty, [])
    assert not merkle.verify_consistency(1, 2, empty, empty, [])
    assert not merkle.verify_consistency(1, 1, empty, empty, [empty])


def test_every_proof_of_every_small_tree_against_the_reference() -> None:
    """The reference generator of the same file: all leaves of trees of 1..64 leaves of one byte each."""
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(64)]
    get = node_source(leaves)
    for size in range(1, 65):
        root = merkle.root_of(leaves[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(get, index, size)
            assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(1, size + 1):
            proof = merkle.consistency_proof(get, old, size)
            assert merkle.verify_consistency(old, size, merkle.root_of(leaves[:old]), root, proof)
