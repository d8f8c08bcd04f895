"""The webhook sink of ledger checkpoints: each checkpoint the writer signs becomes a `ledger.checkpoint`
event on the webhook outbox, for the deployment's endpoints (DEPLOYMENT_WEBHOOKS: admins and auditors
subscribe, never a tenant). The deliverer then delivers it like any other event: signed, with retries.

The checkpoint is in the ledger file before it is offered here; the outbox entry follows it (Redis and
SQLite share no transaction). A checkpoint that never reaches the outbox is not a gap: the next one
commits to every row this one did, and `ledger prove-consistency` links any two.
"""

from __future__ import annotations

from dataclasses import asdict

from redis.asyncio import Redis

from ledger.anchors import IssuedCheckpoint
from plangate_base import codec
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, WebhookEvent
from worker.keys import Keys


class WebhookCheckpointSink:
    """A CheckpointSink (ledger.anchors) that puts each checkpoint on the webhook outbox, when some endpoint
    of the deployment takes `ledger.checkpoint`."""

    name = "webhook"

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def publish(self, checkpoint: IssuedCheckpoint) -> None:
        """Add the `ledger.checkpoint` event to the outbox (nothing when no endpoint takes it)."""
        event = WebhookEvent.LEDGER_CHECKPOINT
        subscribed = f"{DEPLOYMENT_WEBHOOKS}:{event.value}"
        if not await self._redis.sismember(self._keys.webhook_subscriptions(), subscribed):
            return
        fields = {
            "type": event.value,
            "tenant_id": DEPLOYMENT_WEBHOOKS,
            "job_id": "",
            "agent_id": "",
            "data": codec.dumps(checkpoint_data(checkpoint)),
        }
        await self._redis.xadd(self._keys.webhook_outbox(), fields)  # type: ignore[arg-type]


def checkpoint_data(checkpoint: IssuedCheckpoint) -> dict[str, str | int]:
    """The `data` of a `ledger.checkpoint` delivery: the signed note, and what it says beside it (origin,
    tree size, root hash in hex, key id, when it was signed); trust the note, which the ledger's public key
    verifies, not the fields beside it."""
    return asdict(checkpoint)
