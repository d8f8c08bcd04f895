"""The delivery records' protocol on real Redis: an outbox entry a dead deliverer read is fanned out by
another, a fan-out repeated makes no second delivery, a late answer to an expired claim changes
nothing, and only a dead delivery can be redelivered."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import Redis

from governance.webhook_policy import WebhookPolicy
from plangate_base import clock, codec
from plangate_base.vocabulary import AttemptOutcome, DeliveryState, WebhookEvent
from tests.eventually import eventually
from tests.webhook_receiver import start_receiver, verify
from worker.keys import WEBHOOK_GROUP, Keys
from worker.settings import Settings
from worker.webhooks import webhook_lua as lua
from worker.webhooks.deliverer import Deliverer
from worker.webhooks.store import WebhookStore, target_of

TENANT = "hooks"


async def _endpoint(redis: Redis, keys: Keys, url: str) -> tuple[str, str]:
    store = WebhookStore(redis, keys)
    await store.set_policy(TENANT, WebhookPolicy(hosts=["127.0.0.1"], allow_private=True))
    record, secret = await store.add_endpoint(TENANT, url, [WebhookEvent.AGENT_REVOKED], by="test")
    return record.endpoint_id, secret


async def _outbox_entry(redis: Redis, keys: Keys) -> str:
    fields = {
        "type": WebhookEvent.AGENT_REVOKED.value,
        "tenant_id": TENANT,
        "job_id": "",
        "agent_id": "planner-x",
        "data": codec.dumps({"agent_id": "planner-x", "reason": "test"}),
    }
    with contextlib.suppress(Exception):
        await redis.xgroup_create(keys.webhook_outbox(), WEBHOOK_GROUP, id="0", mkstream=True)
    return str(await redis.xadd(keys.webhook_outbox(), fields))  # type: ignore[arg-type]


async def test_an_entry_a_dead_deliverer_read_is_fanned_out_by_another(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    receiver = start_receiver()
    try:
        _endpoint_id, secret = await _endpoint(redis, keys, f"{receiver.base}/ok/revoked")
        entry_id = await _outbox_entry(redis, keys)
        # A deliverer read it and died before fanning it out: the entry stays pending to it.
        read = await redis.xreadgroup(WEBHOOK_GROUP, "dead-deliverer", {keys.webhook_outbox(): ">"})
        assert read[0][1][0][0] == entry_id

        live = Deliverer(redis, settings, "live-deliverer", reclaim_idle_ms=0)
        task = asyncio.create_task(live.run())
        try:
            got = await eventually(lambda: receiver.got("revoked"), timeout_s=10, what="the delivery")
        finally:
            live.stop()
            await task
            await live.close()

        [delivery] = got
        assert delivery.headers["webhook-id"] == f"msg_{entry_id}"
        assert verify(secret, delivery.headers, delivery.body)
        assert delivery.json()["data"] == {"agent_id": "planner-x", "reason": "test"}
        assert await redis.xlen(keys.webhook_outbox()) == 0  # acknowledged and deleted with the fan-out
    finally:
        receiver.stop()


async def test_a_repeated_fan_out_a_late_answer_and_redeliver_keep_one_delivery_in_order(
    redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    endpoint_id, _secret = await _endpoint(redis, keys, "http://127.0.0.1:9/never")
    entry_id = await _outbox_entry(redis, keys)
    await redis.xreadgroup(WEBHOOK_GROUP, "d", {keys.webhook_outbox(): ">"})
    target, delivery_id = target_of(TENANT, endpoint_id), f"msg_{entry_id}.{endpoint_id}"
    fanout, claim, finish, redeliver = (
        redis.register_script(s) for s in (lua.FANOUT, lua.CLAIM, lua.FINISH, lua.REDELIVER)
    )
    delivery, due = keys.webhook_delivery(delivery_id), keys.webhook_due(target)
    fields = {
        "msg_id": f"msg_{entry_id}", "target": target, "tenant_id": TENANT, "endpoint_id": endpoint_id,
        "type": WebhookEvent.AGENT_REVOKED.value, "job_id": "", "agent_id": "planner-x",
        "url": "http://127.0.0.1:9/never", "body": "{}", "event_ms": 1000,
    }  # fmt: skip
    planned = [{"target": target, "delivery_id": delivery_id, "claim": False, "fields": fields}]
    plan = {"entry": entry_id, "group": WEBHOOK_GROUP, "now_ms": 1000, "lease_ms": 0, "targets": planned}
    fan_keys = [keys.webhook_outbox(), keys.webhook_ready(), delivery, due]

    def finishing(attempt: int, outcome: AttemptOutcome) -> list[str]:
        args: dict[str, Any] = {
            "id": delivery_id, "target": target, "attempt": attempt, "outcome": outcome.value,
            "next_ms": 5000, "now_ms": 2000, "status": "", "ttl_s": 60, "job": False, "record": "{}",
            "keep": 5,
        }  # fmt: skip
        return [codec.dumps(args)]

    finish_keys = [
        delivery,
        due,
        keys.webhook_ready(),
        keys.webhook_dead(),
        keys.job("-"),
        keys.ledger_stream(),
    ]
    claim_keys = [keys.webhook_ready(), due, delivery]

    assert await fanout(keys=fan_keys, args=[codec.dumps(plan)]) == []
    assert await fanout(keys=fan_keys, args=[codec.dumps(plan)]) == []  # again: the delivery exists
    assert await redis.zcard(due) == 1
    [_, first, _] = await claim(keys=claim_keys, args=[1000, 0, target, delivery_id])
    [_, second, _] = await claim(keys=claim_keys, args=[1000, 0, target, delivery_id])  # the lease ran out
    assert (first, second) == (1, 2)

    assert await finish(keys=finish_keys, args=finishing(1, AttemptOutcome.DELIVERED)) == 0  # fenced out
    assert await redis.hget(delivery, "state") == DeliveryState.PENDING
    assert (
        await redeliver(
            keys=[delivery, due, keys.webhook_ready(), keys.webhook_dead()], args=[delivery_id, target, 3000]
        )
        == 0
    )
    assert await finish(keys=finish_keys, args=finishing(2, AttemptOutcome.DEAD)) == 1
    assert await redis.hget(delivery, "state") == DeliveryState.DEAD
    assert await redis.zrange(keys.webhook_dead(), 0, -1) == [delivery_id]
    assert await redis.zscore(keys.webhook_ready(), target) is None  # nothing due for the target

    assert await WebhookStore(redis, keys).redeliver(delivery_id)
    assert await redis.hget(delivery, "state") == DeliveryState.PENDING
    assert await redis.hget(delivery, "rebased") == "2"  # the backoff starts over
    assert await redis.zrange(keys.webhook_dead(), 0, -1) == []
    assert await redis.zscore(keys.webhook_ready(), target) is not None


async def test_an_idle_deliverer_sleeps_to_the_next_due_time_and_stops_at_once(
    redis: Redis, settings: Settings, monkeypatch: Any
) -> None:
    # An idle deliverer looked at Redis every WEBHOOK_POLL_S (an outbox read blocking 0.1 s, a look at the
    # ready index 10 times a second): 20 commands a second from each idle worker. Now it waits for the
    # next due time, at most IDLE_S, and stop() ends even a long blocking read.
    keys = Keys(settings.key_prefix)
    deliverer = Deliverer(redis, settings, "idle-deliverer")
    assert await deliverer._start_due() == deliverer.idle_s == max(1.0, settings.webhook_poll_s)
    due_in_ms = 400
    await redis.zadd(keys.webhook_ready(), {target_of(TENANT, "ep-later"): clock.now_ms() + due_in_ms})
    wait_s = await deliverer._start_due()
    assert settings.webhook_poll_s <= wait_s <= due_in_ms / 1000
    await redis.zadd(keys.webhook_ready(), {target_of(TENANT, "ep-much-later"): clock.now_ms() + 60_000})
    await redis.zrem(keys.webhook_ready(), target_of(TENANT, "ep-later"))
    assert await deliverer._start_due() == deliverer.idle_s  # never longer than IDLE_S

    monkeypatch.setattr(deliverer, "idle_s", 60.0)  # an outbox read that would block a minute
    task = asyncio.create_task(deliverer.run())
    await eventually(lambda: deliverer._read is not None, timeout_s=10, what="the blocking outbox read")
    deliverer.stop()
    done, _ = await asyncio.wait({task}, timeout=15)
    assert done == {task} and task.exception() is None  # ended by stop(), not by the read's minute
    await deliverer.close()
