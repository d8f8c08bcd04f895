"""Anchors and checkpoints: the chain head (seq, hash, row count) and the Merkle tree head (a C2SP signed
note) signed with Ed25519; kept in the file, published to Redis and to the checkpoint sinks (a file off the
machine, FileSink; the worker adds a webhook one): anything with CheckpointSink's shape.

A head published outside the file makes a rollback of the whole file (or a truncated tail) detectable;
its signature makes a rewritten chain detectable by anyone holding the public key. The writer signs only
the head it wrote itself (LedgerDiverged otherwise), so a row slipped into the file is never signed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import signed_note, signing
from ledger.errors import LedgerDiverged
from ledger.sqlite_store import LedgerStore
from ledger.tree_store import TreeError, TreeHead
from plangate_base import codec
from plangate_base.clock import now_iso
from plangate_base.logs import get_logger

ANCHOR_FIELDS: tuple[str, ...] = ("head_seq", "head_hash", "row_count", "created_at", "key_id")
"""What an anchor's signature covers (everything but the signature)."""


def make_anchor(key: Ed25519PrivateKey, head_seq: int, head_hash: str, row_count: int) -> dict[str, Any]:
    """A signed anchor of the chain head as of now."""
    fields: dict[str, Any] = {
        "head_seq": head_seq,
        "head_hash": head_hash,
        "row_count": row_count,
        "created_at": now_iso(),
        "key_id": signing.key_id(key.public_key()),
    }
    return {**fields, "signature": signing.sign(key, fields)}


def anchor_signed(anchor: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """Whether the anchor carries a valid signature of this public key."""
    fields = {name: anchor.get(name) for name in ANCHOR_FIELDS}
    return signing.signature_ok(key, fields, str(anchor.get("signature", "")))


def export_anchors(anchors: list[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write anchors as JSON lines (for safe keeping off the machine); returns how many."""
    lines = [codec.canonical_dumps(a) for a in anchors]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def load_anchors(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read anchors exported with export_anchors (JSON lines)."""
    text = Path(path).read_text(encoding="utf-8")
    return [codec.loads(line) for line in text.splitlines() if line.strip()]


def default_origin(key: Ed25519PublicKey) -> str:
    """The log's origin (and checkpoint key name) unless configured: `plangate/` and the key's id."""
    return f"plangate/{signing.key_id(key)}"


def make_checkpoint(key: Ed25519PrivateKey, origin: str, head: TreeHead) -> dict[str, Any]:
    """A signed tree head: its C2SP note and the columns kept beside it."""
    note = signed_note.sign(signed_note.Checkpoint(origin, head.tree_size, head.root).body(), origin, key)
    return {
        "tree_size": head.tree_size,
        "root_hash": head.root.hex(),
        "head_seq": head.head_seq,
        "head_hash": head.head_hash,
        "created_at": now_iso(),
        "key_id": signing.key_id(key.public_key()),
        "note": note,
    }


def write_sink(path: str | os.PathLike[str], note: str) -> None:
    """Replace the sink file with the latest checkpoint note, atomically (a reader sees one or the other)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(note)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)


def read_sink(path: str | os.PathLike[str]) -> str | None:
    """The checkpoint note in a sink file, or None when there is none yet."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class IssuedCheckpoint:
    """A checkpoint the writer has just signed and kept in the file, as the sinks publish it."""

    origin: str
    tree_size: int
    root_hash: str  # hex (the note carries it in base64)
    key_id: str
    created_at: str
    note: str  # the C2SP signed note: what an auditor verifies with the ledger's public key


class CheckpointSink(Protocol):
    """Somewhere each new checkpoint is published off the machine. A sink that fails is logged and counted
    (Anchorer.sink_failures) and the writer goes on: the next checkpoint covers everything this one did."""

    name: str  # short and fixed (a metric label): `file`, `webhook`

    async def publish(self, checkpoint: IssuedCheckpoint) -> None: ...


class FileSink:
    """The checkpoint sink file (PLANGATE_LEDGER_CHECKPOINT_SINK): replaced with each new note."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    async def publish(self, checkpoint: IssuedCheckpoint) -> None:
        """Replace the file with the note (atomically)."""
        await asyncio.to_thread(write_sink, self.path, checkpoint.note)


SINK_TIMEOUT_S = 5.0
"""How long one sink may take to publish a checkpoint before it counts as failed (the writer waits)."""


async def publish(redis: aioredis.Redis, key: str, anchor: dict[str, Any]) -> None:
    """Publish the latest anchor to Redis (a plain string key; one per ledger)."""
    await redis.set(key, codec.canonical_dumps(anchor))


async def fetch(redis: aioredis.Redis, key: str) -> dict[str, Any] | None:
    """The latest anchor published to Redis, if any."""
    raw = await redis.get(key)
    return None if raw is None else codec.loads(raw)


class Anchorer:
    """Signs the chain head and the tree head of one store every `interval_s` (when it moved) and publishes
    them: the anchor and the checkpoint note to Redis, the checkpoint to each sink."""

    def __init__(
        self,
        store: LedgerStore,
        key: Ed25519PrivateKey,
        redis: aioredis.Redis | None = None,
        redis_key: str | None = None,
        interval_s: float = 10.0,
        *,
        origin: str | None = None,
        checkpoint_key: str | None = None,
        sinks: Sequence[CheckpointSink] = (),
        sink_timeout_s: float = SINK_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.key = key
        self.redis = redis
        self.redis_key = redis_key
        self.interval_s = interval_s
        self.origin = origin or default_origin(key.public_key())
        self.checkpoint_key = checkpoint_key
        self.sinks = tuple(sinks)
        self.sink_timeout_s = sink_timeout_s
        self.sink_failures: Counter[str] = Counter()  # by sink name: checkpoints a sink failed to publish
        self._unpublished: tuple[IssuedCheckpoint, list[CheckpointSink]] | None = None  # to try again
        self.latest: dict[str, Any] | None = None
        self.latest_checkpoint: dict[str, Any] | None = None
        self.refused = 0  # heads not signed: not the head this writer wrote, or the tree out of step
        self._due = 0.0
        self._log = get_logger(__name__)

    async def maybe(self, force: bool = False) -> dict[str, Any] | None:
        """Anchor the head if the interval has passed (or `force`) and it moved since the last anchor."""
        now = time.monotonic()
        if not force and now < self._due:
            return None
        self._due = now + self.interval_s
        seq, head_hash, count = await self.store.head()
        if self.latest is not None and self.latest["head_hash"] == head_hash:
            if self._unpublished is not None:  # a sink failed it, and no newer checkpoint came since
                await self._publish(*self._unpublished)
            return None
        tree = await self.store.tree_head()
        self._check_own(tree)
        anchor = make_anchor(self.key, seq, head_hash, count)
        checkpoint = make_checkpoint(self.key, self.origin, tree)
        await self.store.add_anchor(anchor, checkpoint)
        if self.redis is not None and self.redis_key is not None:
            await publish(self.redis, self.redis_key, anchor)
        if self.redis is not None and self.checkpoint_key is not None:
            await self.redis.set(self.checkpoint_key, checkpoint["note"])
        self.latest, self.latest_checkpoint = anchor, checkpoint
        self._log.info("ledger.anchored", head_seq=seq, rows=count, tree_size=tree.tree_size)
        issued = IssuedCheckpoint(
            origin=self.origin, tree_size=tree.tree_size, root_hash=checkpoint["root_hash"],
            key_id=checkpoint["key_id"], created_at=checkpoint["created_at"], note=checkpoint["note"],
        )  # fmt: skip
        await self._publish(issued, self.sinks)
        return anchor

    async def _publish(self, checkpoint: IssuedCheckpoint, sinks: Sequence[CheckpointSink]) -> None:
        """Hand the checkpoint to the sinks. It is signed and kept in the file already, so a sink that
        fails (its disk, its Redis, a bug) is logged and counted, never stops the writer, and is given the
        checkpoint again at the next interval unless a newer one comes first."""
        failed: list[CheckpointSink] = []
        for sink in sinks:
            try:
                async with asyncio.timeout(self.sink_timeout_s):
                    await sink.publish(checkpoint)
            except Exception as exc:  # the sink's failure, whatever it is, is not the ledger's
                failed.append(sink)
                self.sink_failures[sink.name] += 1
                self._log.warning(
                    "ledger.checkpoint_publish_failed",
                    sink=sink.name,
                    tree_size=checkpoint.tree_size,
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                )
        self._unpublished = (checkpoint, failed) if failed else None

    def _check_own(self, tree: TreeHead) -> None:
        """Refuse to sign a head this writer did not write, or a tree that does not cover the chain."""
        own = self.store.written_head
        if self.store.guarded and own is not None and (tree.head_seq, tree.head_hash) != own:
            self.refused += 1
            raise LedgerDiverged(own, (tree.head_seq, tree.head_hash))
        if not tree.in_step:
            self.refused += 1
            raise TreeError(
                f"the Merkle tree covers {tree.tree_size} rows after row {tree.base_seq}, the chain ends at "
                f"row {tree.head_seq}; not signing"
            )


async def own_signed_head(store: LedgerStore, key: Ed25519PrivateKey) -> tuple[int, str] | None:
    """The head of the latest anchor in the file, if `key` signed it (its signature covers seq and hash;
    a checkpoint written with it signs the same moment's tree)."""
    anchor, _checkpoint = await store.latest_signed()
    if anchor is not None and anchor_signed(anchor, key.public_key()):
        return int(anchor["head_seq"]), str(anchor["head_hash"])
    return None
