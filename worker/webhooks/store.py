"""The Redis adapter of webhooks: a tenant's allow list and endpoints, the signing secrets, and the
delivery records the deliverer works through (its Lua is in webhook_lua.py)."""

from __future__ import annotations

import hashlib
import secrets as random
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from governance.webhook_policy import EndpointRecord, WebhookPolicy, subscription_problem, url_problem
from plangate_base import clock, codec
from plangate_base.vocabulary import DEPLOYMENT_WEBHOOKS, DeliveryState, WebhookEvent
from worker.errors import BadRequest
from worker.keys import Keys
from worker.webhooks import webhook_lua as lua
from worker.webhooks.signing import new_secret

CALLBACK = "callback"  # the secret name that signs a tenant's per-job callbacks


class DeliveryRecord(BaseModel):
    """One delivery as operators see it (never its body or its secret)."""

    delivery_id: str
    msg_id: str  # the webhook-id header: the same on every try and redelivery
    tenant_id: str
    endpoint_id: str
    type: WebhookEvent
    job_id: str | None = None
    url: str
    state: DeliveryState
    attempts: int = 0
    last_status: str = ""  # the last answer's status code ('' for none: a timeout or connection error)
    created_at: str = ""


def target_of(tenant_id: str, endpoint_id: str) -> str:
    """Where deliveries queue up and whose secret signs them: `tenant/endpoint id` ('/' is in no id)."""
    return f"{tenant_id}/{endpoint_id}"


def callback_endpoint_id(url: str) -> str:
    """The endpoint id of a per-job callback URL (deliveries to one URL share its concurrency limit)."""
    return "cb_" + hashlib.sha256(url.encode()).hexdigest()[:16]


class WebhookStore:
    """Owns every webhook key but the outbox, which the event sources add to. The endpoints of
    DEPLOYMENT_WEBHOOKS (in place of a tenant id) are the deployment's own: its allow list, its endpoints."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._redeliver = redis.register_script(lua.REDELIVER)

    async def policy(self, tenant_id: str) -> WebhookPolicy:
        """The tenant's allow list (empty: no webhooks anywhere)."""
        raw = await self._redis.get(self._keys.webhook_policy(tenant_id))
        return WebhookPolicy.model_validate_json(raw) if raw else WebhookPolicy()

    async def set_policy(self, tenant_id: str, policy: WebhookPolicy) -> None:
        """Replace the tenant's allow list (an admin's decision)."""
        await self._redis.set(self._keys.webhook_policy(tenant_id), policy.model_dump_json())

    async def check_url(self, tenant_id: str, url: str) -> None:
        """BadRequest unless `url` may receive the tenant's webhooks."""
        problem = url_problem(url, await self.policy(tenant_id))
        if problem:
            raise BadRequest(f"webhook URL refused: {problem}")

    async def check_callback(self, tenant_id: str, url: str) -> None:
        """BadRequest unless a job of the tenant may name `url` as its callback_url."""
        await self.check_url(tenant_id, url)
        if await self.secret(target_of(tenant_id, CALLBACK)) is None:
            raise BadRequest(
                f"tenant {tenant_id!r} has no callback signing secret yet "
                f"(an admin issues one: plangate webhooks callback-secret {tenant_id})"
            )

    async def issue_callback_secret(self, tenant_id: str) -> str:
        """A new secret for the tenant's per-job callbacks (replaces the old one; shown once)."""
        if tenant_id == DEPLOYMENT_WEBHOOKS:
            raise BadRequest("the deployment has no jobs, so no callbacks: a callback secret is a tenant's")
        secret = new_secret()
        await self._redis.hset(self._keys.webhook_secrets(), target_of(tenant_id, CALLBACK), secret)
        return secret

    async def add_endpoint(
        self, tenant_id: str, url: str, events: list[WebhookEvent], *, by: str
    ) -> tuple[EndpointRecord, str]:
        """Register an endpoint for `events`; returns it and its secret (shown once). `tenant_id` is a
        tenant's, or DEPLOYMENT_WEBHOOKS for the deployment-wide events (ledger checkpoints)."""
        problem = subscription_problem(tenant_id, events)
        if problem:
            raise BadRequest(f"webhook events refused: {problem}")
        await self.check_url(tenant_id, url)
        record = EndpointRecord(
            endpoint_id="ep_" + random.token_hex(8),
            tenant_id=tenant_id,
            url=url,
            events=sorted(set(events)),
            created_at=datetime.now(UTC),
            by=by,
        )
        secret = new_secret()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.webhook_endpoints(tenant_id), record.endpoint_id, record.model_dump_json())
            pipe.hset(self._keys.webhook_secrets(), target_of(tenant_id, record.endpoint_id), secret)
            pipe.sadd(self._keys.webhook_subscriptions(), *(f"{tenant_id}:{e.value}" for e in record.events))
            await pipe.execute()
        return record, secret

    async def endpoints(self, tenant_id: str) -> list[EndpointRecord]:
        """The tenant's endpoints, oldest first."""
        raw = await self._redis.hvals(self._keys.webhook_endpoints(tenant_id))
        records = [EndpointRecord.model_validate_json(r) for r in raw]
        return sorted(records, key=lambda r: r.created_at)

    async def remove_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        """Delete an endpoint and its secret (its pending deliveries then go dead); False when unknown."""
        removed = await self._redis.hdel(self._keys.webhook_endpoints(tenant_id), endpoint_id)
        if not removed:
            return False
        await self._redis.hdel(self._keys.webhook_secrets(), target_of(tenant_id, endpoint_id))
        still = {e.value for r in await self.endpoints(tenant_id) for e in r.events}
        gone = [f"{tenant_id}:{e.value}" for e in WebhookEvent if e.value not in still]
        if gone:
            await self._redis.srem(self._keys.webhook_subscriptions(), *gone)
        return True

    async def rotate_secret(self, tenant_id: str, endpoint_id: str) -> str:
        """A new secret for an endpoint (the old one stops signing at once); shown once."""
        if not await self._redis.hexists(self._keys.webhook_endpoints(tenant_id), endpoint_id):
            raise BadRequest(f"tenant {tenant_id!r} has no webhook endpoint {endpoint_id!r}")
        secret = new_secret()
        await self._redis.hset(self._keys.webhook_secrets(), target_of(tenant_id, endpoint_id), secret)
        return secret

    async def secret(self, target: str) -> str | None:
        """The secret that signs deliveries to `target` (None: the endpoint was removed)."""
        return await self._redis.hget(self._keys.webhook_secrets(), target)

    async def subscribed(self, tenant_id: str, event: WebhookEvent) -> bool:
        """Whether some endpoint of the tenant takes `event`."""
        return bool(await self._redis.sismember(self._keys.webhook_subscriptions(), f"{tenant_id}:{event}"))

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery's record, or None."""
        raw = await self._redis.hgetall(self._keys.webhook_delivery(delivery_id))
        return _record(delivery_id, raw) if raw else None

    async def dead(self, *, tenant_id: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        """Deliveries that gave up, newest first (expired records are dropped from the index)."""
        found: list[DeliveryRecord] = []
        for delivery_id in await self._redis.zrevrange(self._keys.webhook_dead(), 0, -1):
            record = await self.delivery(delivery_id)
            if record is None or record.state is not DeliveryState.DEAD:
                await self._redis.zrem(self._keys.webhook_dead(), delivery_id)
                continue
            if tenant_id is None or record.tenant_id == tenant_id:
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    async def redeliver(self, delivery_id: str) -> bool:
        """Make a dead delivery due now, with the same webhook-id and a new retry window; False when it
        is not a dead delivery."""
        record = await self.delivery(delivery_id)
        if record is None or record.state is not DeliveryState.DEAD:
            return False
        target = target_of(record.tenant_id, record.endpoint_id)
        k = self._keys
        keys = [k.webhook_delivery(delivery_id), k.webhook_due(target), k.webhook_ready(), k.webhook_dead()]
        return bool(await self._redeliver(keys=keys, args=[delivery_id, target, clock.now_ms()]))


def _record(delivery_id: str, raw: dict[str, str]) -> DeliveryRecord:
    data: dict[str, Any] = {k: raw.get(k, "") for k in ("msg_id", "tenant_id", "endpoint_id", "type", "url")}
    created = int(raw.get("created_ms") or 0)
    return DeliveryRecord(
        delivery_id=delivery_id,
        **data,
        job_id=raw.get("job_id") or None,
        state=DeliveryState(raw.get("state", DeliveryState.PENDING.value)),
        attempts=int(raw.get("attempts") or 0),
        last_status=raw.get("last_status", ""),
        created_at=datetime.fromtimestamp(created / 1000, UTC).isoformat() if created else "",
    )


def body_json(event: str, timestamp: str, data: dict[str, Any]) -> str:
    """A delivery's body, the Standard Webhooks shape: type, timestamp, data."""
    return codec.dumps({"type": event, "timestamp": timestamp, "data": data})
