"""Verifying the live ledger as its operator does: the one set-up `plangate ledger verify`, the API's
`GET /v1/ledger/verify` and `plangate doctor`'s `ledger.chain` share.

The evidence beside the file's own anchors and checkpoints: what the writer published in Redis (its
latest anchor, its latest checkpoint note and the head it last wrote) and the checkpoint sink's note.
Which public key is trusted is the caller's choice (the CLI refuses without one, the API and the
doctor warn); everything else is decided here, once."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ledger import anchors as ledger_anchors
from ledger.verify import VerifyReport, verify_ledger
from worker.keys import Keys
from worker.settings import Settings


@dataclass
class Published:
    """What the ledger writer published in Redis: its latest anchor and checkpoint note, and its head
    (`seq:hash` of the last row it committed)."""

    anchor: dict[str, Any] | None = None
    note: str | None = None
    writer_head: str | None = None


@dataclass
class Evidence:
    """Anchors and checkpoint notes kept outside the file, and the writer's head to compare with."""

    anchors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    writer_head: str | None = None


async def fetch_published(redis: Redis, keys: Keys) -> Published:
    """The writer's anchor, checkpoint note and head from Redis (a text client)."""
    return Published(
        anchor=await ledger_anchors.fetch(redis, keys.ledger_anchor()),
        note=await redis.get(keys.ledger_checkpoint()),
        writer_head=await redis.get(keys.ledger_head()),
    )


async def read_notes(paths: Iterable[Path | str | None]) -> list[str]:
    """The checkpoint note in each of these files (the sink, or one an auditor kept); empty files skipped."""
    notes: list[str] = []
    for path in paths:
        if path is not None:
            note = await asyncio.to_thread(ledger_anchors.read_sink, path)
            notes += [note] if note else []
    return notes


async def gather_evidence(
    settings: Settings,
    published: Published | None,
    *,
    anchors: Iterable[dict[str, Any]] = (),
    note_files: Iterable[Path | str | None] = (),
    with_sink: bool = True,
) -> Evidence:
    """The evidence for the live ledger: `published` (None where Redis is not consulted), the sink's note
    (unless `with_sink` is off: verifying a copy of the file), and what the caller adds."""
    sink = [settings.ledger_checkpoint_sink] if with_sink else []
    evidence = Evidence(anchors=list(anchors), notes=await read_notes([*note_files, *sink]))
    if published is not None:
        evidence.anchors += [published.anchor] if published.anchor else []
        evidence.notes += [published.note] if published.note else []
        evidence.writer_head = published.writer_head
    return evidence


def live_grace_s(settings: Settings) -> float:
    """How old an unsigned row of the live file may be: the writer signs its head every anchor interval,
    so a row older than a few intervals and still unsigned is not its own (or the writer stopped)."""
    return 3 * settings.ledger_anchor_interval_s + 1


async def verify_live(
    path: Path,
    key: Any,
    evidence: Evidence,
    *,
    key_name: str | None = None,
    grace_s: float | None,
) -> VerifyReport:
    """Walk the file with the evidence; signed checkpoints are required whenever a key is trusted. A
    writer head in Redis that the file does not end at is a warning (rows not yet acknowledged, or added
    behind the writer's back)."""
    report = await asyncio.to_thread(
        functools.partial(
            verify_ledger,
            path,
            key,
            evidence.anchors,
            checkpoints=evidence.notes,
            key_name=key_name,
            require_signed=key is not None,
            unsigned_grace_s=grace_s,
        )
    )
    head = evidence.writer_head
    if head and report.ok and head != f"{report.head_seq}:{report.head_hash}":
        report.warnings.append(
            f"the writer last published head {head.split(':')[0]}, the file ends at row "
            f"{report.head_seq}: rows after it are not yet acknowledged, or were added behind the writer"
        )
    return report
