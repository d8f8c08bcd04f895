"""Anchors: the chain head (seq, hash, row count) signed with Ed25519; kept in the file, Redis, elsewhere.

An anchor published outside the file makes a rollback of the whole file (or a truncated tail) detectable;
its signature makes a rewritten chain detectable by anyone holding the public key.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import signing
from ledger.sqlite_store import LedgerStore
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


async def publish(redis: aioredis.Redis, key: str, anchor: dict[str, Any]) -> None:
    """Publish the latest anchor to Redis (a plain string key; one per ledger)."""
    await redis.set(key, codec.canonical_dumps(anchor))


async def fetch(redis: aioredis.Redis, key: str) -> dict[str, Any] | None:
    """The latest anchor published to Redis, if any."""
    raw = await redis.get(key)
    return None if raw is None else codec.loads(raw)


class Anchorer:
    """Signs the chain head of one store every `interval_s` (when it moved) and publishes it to Redis."""

    def __init__(
        self,
        store: LedgerStore,
        key: Ed25519PrivateKey,
        redis: aioredis.Redis | None = None,
        redis_key: str | None = None,
        interval_s: float = 10.0,
    ) -> None:
        self.store = store
        self.key = key
        self.redis = redis
        self.redis_key = redis_key
        self.interval_s = interval_s
        self.latest: dict[str, Any] | None = None
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
            return None
        anchor = make_anchor(self.key, seq, head_hash, count)
        await self.store.add_anchor(anchor)
        if self.redis is not None and self.redis_key is not None:
            await publish(self.redis, self.redis_key, anchor)
        self.latest = anchor
        self._log.info("ledger_anchored", head_seq=seq, rows=count)
        return anchor
