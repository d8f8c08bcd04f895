"""Signed checkpoints published to a webhook: the real ledger writer (as `plangate worker` starts it, with
its webhook sink) and a real deliverer on real Redis, a receiver on loopback that checks each Standard
Webhooks signature (tests/webhook_receiver.py), and the note in each body checked with the ledger's
public key by the ledger's own signed-note code. Checkpoints are deployment-wide: the deployment's
endpoint (`*`) gets them, a tenant's endpoint never, and a tenant cannot subscribe to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from governance.webhook_policy import WebhookPolicy
from ledger import signed_note
from ledger.signing import load_public_key, public_key_path
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, LEDGER_STREAM_FIELD, WebhookEvent
from tests.eventually import eventually
from tests.unit.ledger_events import submitted_event
from tests.webhook_receiver import Received, Receiver, start_receiver, verify
from worker.errors import BadRequest
from worker.keys import Keys
from worker.settings import Settings
from worker.webhooks.deliverer import Deliverer
from worker.webhooks.store import WebhookStore
from worker.worker_app import start_ledger_writer, stop_ledger_writer

TENANT = "tenant-t"
TENANT_EVENTS = [e for e in WebhookEvent if e is not WebhookEvent.LEDGER_CHECKPOINT]


@dataclass
class Hooks:
    """The deployment's checkpoint endpoint and a tenant's endpoint for every event it may take."""

    receiver: Receiver
    deployment_secret: str
    tenant_secret: str


@pytest.fixture
async def hooks(redis: Redis, settings: Settings) -> AsyncIterator[Hooks]:
    store = WebhookStore(redis, Keys(settings.key_prefix))
    receiver = start_receiver()
    try:
        loopback = WebhookPolicy(hosts=["127.0.0.1"], allow_private=True)
        await store.set_policy(DEPLOYMENT_WEBHOOKS, loopback)
        await store.set_policy(TENANT, loopback)
        _, deployment_secret = await store.add_endpoint(
            DEPLOYMENT_WEBHOOKS, f"{receiver.base}/ok/auditor", [WebhookEvent.LEDGER_CHECKPOINT], by="test"
        )
        record, tenant_secret = await store.add_endpoint(
            TENANT, f"{receiver.base}/ok/tenant", TENANT_EVENTS, by="t"
        )
        # Even a tenant endpoint naming ledger.checkpoint (written around the store's check) gets none:
        # checkpoints are published for the deployment's endpoints only.
        keys = Keys(settings.key_prefix)
        widened = record.model_copy(update={"events": [*TENANT_EVENTS, WebhookEvent.LEDGER_CHECKPOINT]})
        await redis.hset(keys.webhook_endpoints(TENANT), record.endpoint_id, widened.model_dump_json())
        await redis.sadd(keys.webhook_subscriptions(), f"{TENANT}:{WebhookEvent.LEDGER_CHECKPOINT}")
        yield Hooks(receiver, deployment_secret, tenant_secret)
    finally:
        receiver.stop()


@contextlib.asynccontextmanager
async def deliverer(redis: Redis, settings: Settings) -> AsyncIterator[None]:
    running = Deliverer(redis, settings, "test-deliverer")
    task = asyncio.create_task(running.run())
    try:
        yield
    finally:
        running.stop()
        await asyncio.wait_for(task, 10)
        await running.close()


async def record_jobs(redis: Redis, settings: Settings, n: int) -> None:
    """`n` submitted events on the ledger stream, as producers add them."""
    stream = Keys(settings.key_prefix).ledger_stream()
    for _ in range(n):
        await redis.xadd(stream, {LEDGER_STREAM_FIELD: json.dumps(submitted_event(uuid.uuid4().hex))})


def checked_checkpoint(got: Received, secret: str, settings: Settings) -> dict[str, Any]:
    """The data of a signed `ledger.checkpoint` delivery whose note the ledger's public key verifies."""
    assert verify(secret, got.headers, got.body), got.headers
    body = got.json()
    assert body["type"] == WebhookEvent.LEDGER_CHECKPOINT
    data = body["data"]
    public = load_public_key(public_key_path(settings.signing_key_path()))
    checkpoint = signed_note.verified_checkpoint(data["note"], data["origin"], public)
    assert checkpoint.size == data["tree_size"]
    assert checkpoint.root.hex() == data["root_hash"]
    return dict(data)


def settings_for(settings: Settings) -> Settings:
    return settings.with_changes(ledger_anchor_interval_s=0.2, webhook_poll_s=0.05, webhook_retry_base_s=0.05)


async def test_each_checkpoint_reaches_the_deployments_endpoint_signed_and_verifiable(
    redis: Redis, settings: Settings, hooks: Hooks
) -> None:
    settings = settings_for(settings)
    async with deliverer(redis, settings):
        writer, task = await start_ledger_writer(redis, settings)
        try:
            await record_jobs(redis, settings, 3)
            first = await eventually(
                lambda: [g for g in hooks.receiver.got("auditor") if g.json()["data"]["tree_size"] >= 3],
                timeout_s=30,
                what="a checkpoint of 3 rows at the deployment's endpoint",
            )
            data = checked_checkpoint(first[0], hooks.deployment_secret, settings)
            assert data["tree_size"] == 3
            assert data["key_id"] == writer.anchorer.latest_checkpoint["key_id"]  # type: ignore[union-attr]
            # The checkpoint delivered is the one the writer signed and kept in the file.
            _anchor, kept = await writer.store.latest_signed()
            assert kept is not None and kept["note"] == data["note"]
            # Rows written just before shutdown are covered by the checkpoint signed at shutdown.
            await record_jobs(redis, settings, 2)
            await eventually(lambda: writer.processed >= 5, what="the writer to record 5 events")
        finally:
            await stop_ledger_writer(writer, task)
        final = await eventually(
            lambda: [g for g in hooks.receiver.got("auditor") if g.json()["data"]["tree_size"] == 5],
            timeout_s=30,
            what="the shutdown checkpoint of 5 rows",
        )
        checked_checkpoint(final[-1], hooks.deployment_secret, settings)
    assert writer.anchorer is not None and not writer.anchorer.sink_failures
    # The tenant's endpoint takes every event a tenant may subscribe to, and never got a checkpoint.
    assert all(g.json()["type"] != WebhookEvent.LEDGER_CHECKPOINT for g in hooks.receiver.got("tenant"))


async def test_a_tenant_cannot_subscribe_to_checkpoints(redis: Redis, settings: Settings) -> None:
    store = WebhookStore(redis, Keys(settings.key_prefix))
    await store.set_policy(TENANT, WebhookPolicy(hosts=["127.0.0.1"], allow_private=True))
    with pytest.raises(BadRequest, match="whole deployment"):
        await store.add_endpoint(TENANT, "http://127.0.0.1:9/x", [WebhookEvent.LEDGER_CHECKPOINT], by="t")
    with pytest.raises(BadRequest, match="deployment-wide events only"):
        await store.add_endpoint(
            DEPLOYMENT_WEBHOOKS, "http://127.0.0.1:9/x", [WebhookEvent.JOB_TERMINAL], by="a"
        )
    assert not await store.subscribed(TENANT, WebhookEvent.LEDGER_CHECKPOINT)


async def test_a_webhook_sink_that_fails_never_stops_the_writer(redis: Redis, settings: Settings) -> None:
    """The outbox unwritable (a wrong type at its key): checkpoints are still signed and kept, the rows
    still written; the failures are counted; once the outbox is back, the pending checkpoint is offered
    again although no row came since."""
    settings = settings_for(settings)
    keys = Keys(settings.key_prefix)
    await redis.sadd(keys.webhook_subscriptions(), f"{DEPLOYMENT_WEBHOOKS}:{WebhookEvent.LEDGER_CHECKPOINT}")
    await redis.set(keys.webhook_outbox(), "not a stream")
    writer, task = await start_ledger_writer(redis, settings)
    try:
        await record_jobs(redis, settings, 2)
        await eventually(lambda: writer.anchorer.sink_failures["webhook"] >= 2, what="failed publications")  # type: ignore[union-attr]
        await record_jobs(redis, settings, 1)
        await eventually(
            lambda: (writer.anchorer.latest_checkpoint or {}).get("tree_size") == 3,  # type: ignore[union-attr]
            what="a checkpoint of the 3 rows",
        )
        assert not task.done() and writer.diverged is None
        failures = REGISTRY.get_sample_value(
            "plangate_ledger_checkpoint_publish_failures_total", {"sink": "webhook"}
        )
        assert failures is not None and failures >= 2  # on /metrics
        await redis.delete(keys.webhook_outbox())
        entries = await eventually(
            lambda: redis.xrange(keys.webhook_outbox()), what="the pending checkpoint on the outbox"
        )
        assert json.loads(entries[0][1]["data"])["tree_size"] == 3
    finally:
        await stop_ledger_writer(writer, task)
