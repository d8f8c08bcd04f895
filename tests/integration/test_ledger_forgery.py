"""An insider appends a well-formed row to a live ledger (right hashes, right Merkle tree, as the store itself
would write it): the writer never extends it nor signs it, and no writer after it does either."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ledger.anchors import Anchorer, fetch
from ledger.errors import LedgerDiverged
from ledger.sqlite_store import LedgerStore, connect_writer, insert_batch_sync
from ledger.verify import verify_ledger
from tests.eventually import eventually
from tests.integration.test_ledger_standby import GROUP, Ledger
from tests.unit.ledger_events import make_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(redis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> AsyncIterator[Ledger]:
    env = Ledger(redis, key_prefix, tmp_path / "ledger.db")
    yield env
    for writer, _task in list(env.tasks):
        await env.stop(writer)


def forge_review(path: Path) -> int:
    """Append a `review_approved` by an invented reviewer with the store's own code; returns its seq."""
    forged = make_event("review_approved", job_id="job-forged", payload={"reviewer": "mallory", "note": "ok"})
    conn = connect_writer(path)
    try:
        insert_batch_sync(conn, [forged])
        return int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])
    finally:
        conn.close()


def signed_heads(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        anchors = [r[0] for r in conn.execute("SELECT head_seq FROM anchors")]
        return anchors + [r[0] for r in conn.execute("SELECT head_seq FROM tree_checkpoints")]


async def test_a_forged_tail_is_never_signed(ledger: Ledger) -> None:
    writer = await ledger.start("w1")
    await ledger.add(20)
    await eventually(lambda: writer.processed == 20, what="20 entries recorded")
    await eventually(lambda: writer.anchorer.latest is not None and writer.anchorer.latest["head_seq"] == 20)

    forged_seq = forge_review(ledger.path)
    assert forged_seq == 21
    await ledger.add(5)  # the writer's next batch would extend the forged row
    await eventually(lambda: writer.diverged is not None, what="the writer refuses the forged head")
    assert isinstance(writer.diverged, LedgerDiverged) and writer.diverged.found[0] == forged_seq
    await ledger.stop(writer)  # its shutdown signs nothing either

    assert max(signed_heads(ledger.path)) == 20
    published = await fetch(ledger.redis, ledger.anchor_key)
    assert published is not None and published["head_seq"] == 20
    # The five entries were not recorded: still in the stream for an operator to replay.
    assert await ledger.redis.xlen(ledger.stream) == 5
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 21

    # A writer started afterwards (a restart, a standby) adopts no forged head either.
    second = await ledger.start("w2")
    await eventually(lambda: second.diverged is not None, what="the next writer refuses it too")
    await ledger.stop(second)
    assert max(signed_heads(ledger.path)) == 20
    report = verify_ledger(ledger.path, ledger.key.public_key(), require_signed=True)
    assert report.unsigned_rows == 1 and report.warnings, report


async def test_rows_a_dead_writer_committed_but_never_acked_are_adopted(ledger: Ledger) -> None:
    writer = await ledger.start("w1")
    await ledger.add(10)
    await eventually(lambda: writer.processed == 10, what="10 entries recorded")
    await ledger.stop(writer)
    # Another writer read 8 entries, committed them, and died before its ack (and before signing).
    await ledger.add(8)
    reply = await ledger.redis.xreadgroup(GROUP, "dead", {ledger.stream: ">"}, count=8)
    events = [json.loads(fields["e"]) for _id, fields in reply[0][1]]
    conn = connect_writer(ledger.path)
    try:
        assert insert_batch_sync(conn, events) == 8
    finally:
        conn.close()

    second = await ledger.start("w2")
    await eventually(lambda: second.processed == 8, what="the dead writer's entries acked")
    assert second.diverged is None and second.written == 0  # already in the file: recorded once
    await ledger.add(3)
    await eventually(lambda: second.written == 3, what="new entries recorded")
    await eventually(lambda: second.anchorer.latest is not None and second.anchorer.latest["head_seq"] == 21)
    assert verify_ledger(ledger.path, ledger.key.public_key(), require_signed=True).ok


def put_back(source: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, path)


async def attest(ledger: Ledger) -> None:
    """What `plangate ledger checkpoint --sign` does: sign the file's head with the ledger's key."""
    store = await LedgerStore.open(ledger.path)
    try:
        await Anchorer(store, ledger.key).maybe(force=True)
    finally:
        await store.close()


async def test_an_attested_head_is_adopted_a_rolled_back_file_is_not(ledger: Ledger, tmp_path: Path) -> None:
    writer = await ledger.start("w1")
    await ledger.add(10)
    await eventually(lambda: writer.processed == 10, what="10 entries recorded")
    await ledger.stop(writer)  # signs head 10, published head 10
    copy = tmp_path / "copy.db"
    shutil.copy(ledger.path, copy)
    forge_review(ledger.path)
    refused = await ledger.start("w2")
    await eventually(lambda: refused.diverged is not None, what="the forged head refused")
    await ledger.stop(refused)

    await attest(ledger)  # an operator looked at row 11 and signed the head
    adopted = await ledger.start("w3")
    await ledger.add(2)  # (and the five the forgery held back)
    await eventually(lambda: adopted.written == 2, what="writing again after the attestation")
    assert adopted.diverged is None
    await ledger.stop(adopted)

    put_back(copy, ledger.path)  # the file rolled back to a copy whose own anchors still verify
    rolled = await ledger.start("w4")
    await eventually(lambda: rolled.diverged is not None, what="the rolled-back file refused")
    await ledger.stop(rolled)
