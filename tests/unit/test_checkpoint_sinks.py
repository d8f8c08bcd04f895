"""The Anchorer's checkpoint sinks (a real SQLite file, no Redis): every sink gets each new checkpoint; one
that fails or hangs is counted and never stops the signing, and is offered the checkpoint again at the
next interval; and who may subscribe to the deployment-wide `ledger.checkpoint` event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.webhook_policy import subscription_problem
from ledger import signed_note
from ledger.anchors import Anchorer, FileSink, IssuedCheckpoint, read_sink
from ledger.sqlite_store import LedgerStore
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, WebhookEvent
from tests.unit.ledger_events import make_event


class Kept:
    """A sink that keeps what it is given, failing while `broken`."""

    name = "kept"

    def __init__(self, *, broken: bool = False, hang: bool = False) -> None:
        self.got: list[IssuedCheckpoint] = []
        self.broken = broken
        self.hang = hang

    async def publish(self, checkpoint: IssuedCheckpoint) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.broken:
            raise ConnectionError("the sink is down")
        self.got.append(checkpoint)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    s = await LedgerStore.open(tmp_path / "ledger.db")
    yield s
    await s.close()


async def test_every_sink_gets_the_signed_checkpoint(store: LedgerStore, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    kept = Kept()
    anchorer = Anchorer(store, key, sinks=[FileSink(tmp_path / "offsite" / "checkpoint"), kept])
    await store.insert_events([make_event("submitted", job_id=f"job-{i}") for i in range(3)])
    assert await anchorer.maybe(force=True) is not None
    [issued] = kept.got
    assert issued.note == read_sink(tmp_path / "offsite" / "checkpoint")
    checked = signed_note.verified_checkpoint(issued.note, anchorer.origin, key.public_key())
    assert (issued.origin, issued.tree_size, issued.root_hash) == (anchorer.origin, 3, checked.root.hex())
    assert checked.size == 3 and not anchorer.sink_failures


async def test_a_failing_or_hanging_sink_is_counted_and_given_the_checkpoint_again(
    store: LedgerStore,
) -> None:
    broken, hanging, fine = Kept(broken=True), Kept(hang=True), Kept()
    hanging.name = "hanging"
    anchorer = Anchorer(
        store, Ed25519PrivateKey.generate(), sinks=[broken, hanging, fine], sink_timeout_s=0.05
    )
    await store.insert_events([make_event("submitted", job_id="job-1")])
    assert await anchorer.maybe(force=True) is not None  # signed and kept whatever the sinks did
    assert anchorer.sink_failures == {"kept": 1, "hanging": 1}
    assert len(fine.got) == 1 and not broken.got
    _anchor, kept = await store.latest_signed()
    assert kept is not None and kept["note"] == fine.got[0].note

    broken.broken, hanging.hang = False, False
    assert await anchorer.maybe(force=True) is None  # no new row: no new checkpoint...
    assert [c.note for c in broken.got] == [c.note for c in hanging.got] == [fine.got[0].note]  # ...but sent
    assert len(fine.got) == 1  # the sink that had it is not given it twice
    assert await anchorer.maybe(force=True) is None
    assert len(broken.got) == 1  # and once it is published, it is not offered again


def test_only_the_deployments_endpoints_take_checkpoints_and_they_take_nothing_else() -> None:
    checkpoint, terminal = WebhookEvent.LEDGER_CHECKPOINT, WebhookEvent.JOB_TERMINAL
    assert subscription_problem(DEPLOYMENT_WEBHOOKS, [checkpoint]) is None
    assert subscription_problem("tenant-t", [terminal, WebhookEvent.AGENT_REVOKED]) is None
    assert "whole deployment" in (subscription_problem("tenant-t", [terminal, checkpoint]) or "")
    assert "deployment-wide events only" in (subscription_problem(DEPLOYMENT_WEBHOOKS, [terminal]) or "")
