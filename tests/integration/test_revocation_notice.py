"""The agent.revoked webhook entry is written in the revocation's own transaction: a revocation is
never recorded without the notice its tenant's endpoints subscribed to (what Redis executed, seen
through MONITOR on our real server)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from redis.asyncio import Redis

from governance.models import AgentRecord, TenantRecord
from governance.webhook_policy import WebhookPolicy
from plangate_base.vocabulary import WebhookEvent
from worker.admin import AgentAdmin
from worker.keys import Keys
from worker.settings import Settings
from worker.webhooks.store import WebhookStore

_DEADLINE_S = 10.0


async def _transactions(
    monitor: Redis, db: int, started: asyncio.Event, stop: asyncio.Event
) -> list[list[str]]:
    """The commands of each MULTI ... EXEC on database `db` (from MONITOR, on once `started` is set),
    until `stop` is set and a read finds nothing more."""
    open_: dict[str, list[str]] = defaultdict(list)
    done: list[list[str]] = []
    async with monitor.monitor() as watch:  # (entered once the server answered MONITOR's OK)
        started.set()
        ready = time.monotonic() + _DEADLINE_S
        while time.monotonic() < ready:
            try:
                seen = await asyncio.wait_for(watch.next_command(), timeout=0.5)
            except TimeoutError:
                if stop.is_set():
                    return done
                continue
            if int(seen["db"]) != db:
                continue
            client = f"{seen['client_address']}:{seen['client_port']}"
            command = str(seen["command"])
            verb = command.split(" ", 1)[0].upper()
            if verb == "MULTI":
                open_[client] = []
            elif verb == "EXEC":
                done.append(open_.pop(client, []))
            elif client in open_:
                open_[client].append(command)
    return done


async def test_the_revoked_notice_is_added_in_the_revocations_transaction(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    admin = AgentAdmin(redis, keys)
    await admin.tenants.put(TenantRecord(tenant_id="acme"))
    await admin.save_agent(AgentRecord(agent_id="revokee", tenant_id="acme"), by="test")
    webhooks = WebhookStore(redis, keys)
    await webhooks.set_policy("acme", WebhookPolicy(hosts=["127.0.0.1"], allow_private=True))
    await webhooks.add_endpoint("acme", "http://127.0.0.1:9/hook", [WebhookEvent.AGENT_REVOKED], by="test")

    monitor = Redis.from_url(redis_url, decode_responses=True)
    db = int((await redis.client_info())["db"])
    started, stop = asyncio.Event(), asyncio.Event()
    try:
        watching = asyncio.create_task(_transactions(monitor, db, started, stop))
        await asyncio.wait_for(started.wait(), _DEADLINE_S)
        await admin.revoke("revokee", reason="leaked key", by="olga")
        stop.set()
        transactions = await watching
    finally:
        await monitor.aclose()

    [revocation] = [t for t in transactions if any(keys.agent_state("revokee") in c for c in t)]
    assert any(c.startswith("XADD") and keys.webhook_outbox() in c for c in revocation), revocation
    assert any(c.startswith("XADD") and keys.ledger_stream() in c for c in revocation), revocation
    [(_id, entry)] = await redis.xrange(keys.webhook_outbox())
    assert entry["type"] == WebhookEvent.AGENT_REVOKED.value and entry["agent_id"] == "revokee"
