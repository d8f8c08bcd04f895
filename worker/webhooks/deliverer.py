"""The webhook deliverer: its own loop, off every job's path, any number of them against one Redis.

1. Fan-out: it reads the outbox (a stream with consumer group WEBHOOK_GROUP; event sources add to it in
   the transaction of the event) and turns each entry into one delivery per target (the job's
   callback_url, the tenant's endpoints for the event type), acknowledging the entry in the same script,
   which also claims the first attempt of each delivery whose target has room. Entries a dead deliverer
   left pending are claimed again (XAUTOCLAIM).
2. Delivery: its dispatch loop polls the `ready` index for targets with a due delivery (retries, and
   deliveries the fan-out left for want of room) and claims, per target, only as many as the target's
   concurrency limit leaves room for, each with a lease (its due time pushed out).
   A killed deliverer's deliveries come due again when their lease runs out; the webhook-id stays the
   same, so delivery is at least once and receivers de-duplicate.
3. Each attempt has a time limit; its outcome (status, latency) is recorded on the delivery, on the
   job's status (`webhooks`) and in metrics; the first delivery of a job's terminal event is recorded in
   the ledger, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from governance.webhook_policy import (
    EndpointRecord,
    WebhookPolicy,
    attempt_outcome,
    retry_delay_s,
    url_problem,
)
from plangate_base import clock, codec
from plangate_base.logs import get_logger
from plangate_base.vocabulary import JOB_WEBHOOK_EVENTS, AttemptOutcome, EventKind, WebhookEvent
from worker import metrics
from worker.job_models import CALLBACK_URL_FIELD, JobStatus
from worker.keys import WEBHOOK_GROUP, Keys
from worker.ledger_events import ledger_event
from worker.redis_conn import UNREACHABLE
from worker.settings import Settings
from worker.webhooks import webhook_lua as lua
from worker.webhooks.sender import Answer, Sender
from worker.webhooks.signing import signed_headers
from worker.webhooks.store import CALLBACK, WebhookStore, body_json, callback_endpoint_id, target_of

log = get_logger(__name__)

KEEP_ON_JOB = 50  # attempts shown on a job's status
CONFIG_CACHE_S = 1.0  # how long a deliverer uses an allow list and a secret it read
_RECLAIM_EVERY_S = 5.0
# The longest an idle deliverer waits between two looks at Redis (an outbox read blocks this long; the
# dispatch loop sleeps this long when nothing is due). New outbox entries end the read at once and an
# attempt's end wakes the dispatch, so this bounds only how soon a retry another deliverer scheduled, or
# a lease that ran out, is seen; a due time sooner than this is slept to exactly.
IDLE_S = 1.0
OUTBOX_IDLE_MS = 30_000  # an outbox entry pending this long belonged to a dead deliverer
_LEASE_MARGIN_S = 1.0
_BATCH = 100
_FAN_OUT_AT_ONCE = 16
_EVENTS = frozenset(e.value for e in WebhookEvent)


class Deliverer:
    """One deliverer (consumer `name` of the outbox group)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        name: str,
        *,
        sender: Sender | None = None,
        reclaim_idle_ms: int = OUTBOX_IDLE_MS,
    ) -> None:
        """`reclaim_idle_ms`: how long an outbox entry another deliverer read stays pending before this one
        takes it over (that deliverer is presumed dead)."""
        self._redis = redis
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._name = name
        self._reclaim_idle_ms = reclaim_idle_ms
        self._store = WebhookStore(redis, self._keys)
        self._sender = sender or Sender(settings.webhook_timeout_s)
        self._fanout = redis.register_script(lua.FANOUT)
        self._claim = redis.register_script(lua.CLAIM)
        self._finish = redis.register_script(lua.FINISH)
        self._inflight: dict[str, int] = defaultdict(int)
        self._config: dict[str, tuple[float, WebhookPolicy, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._read: asyncio.Task[bool] | None = None  # the outbox read in flight (stop() ends it)
        self.poll_s = settings.webhook_poll_s
        self.idle_s = max(IDLE_S, settings.webhook_poll_s)
        # Longer than an attempt can take (its time limit, then recording it); a killed deliverer's
        # claim runs out after it.
        self._lease_ms = int((2 * settings.webhook_timeout_s + _LEASE_MARGIN_S) * 1000)

    async def run(self) -> None:
        """Fan out and deliver until `stop()`; Redis outages are waited out."""
        log.info("webhooks.deliverer_started", deliverer=self._name)
        await self._ensure_group()
        dispatch = asyncio.create_task(self._dispatch(), name="webhook-dispatch")
        try:
            await self._read_loop()
        finally:
            dispatch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatch

    async def _read_loop(self) -> None:
        """Fan-out: the outbox, blocking up to WEBHOOK_POLL_S a read."""
        backlog, last_reclaim = True, 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() - last_reclaim > _RECLAIM_EVERY_S:
                    await self._reclaim()
                    last_reclaim = time.monotonic()
                self._read = asyncio.ensure_future(self._read_outbox("0" if backlog else ">"))
                backlog = await self._read
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self._stopping.is_set() or (task is not None and task.cancelling()):
                    raise  # this loop itself was cancelled
                return  # stop() ended the blocking read
            except UNREACHABLE as exc:
                log.warning("webhooks.redis_unreachable", error=str(exc))
                await self._pause()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()

    async def _dispatch(self) -> None:
        """Delivery: due deliveries (retries, and those the fan-out left for want of room), at once when an
        attempt ends or the fan-out left some, else at the next due time (at least WEBHOOK_POLL_S apart,
        at most IDLE_S)."""
        while not self._stopping.is_set():
            wait_s = self.poll_s
            try:
                wait_s = await self._start_due()
            except UNREACHABLE as exc:
                log.warning("webhooks.redis_unreachable", error=str(exc))
                await self._pause()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            self._wake.clear()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=1.0)

    def stop(self) -> None:
        """Ask the loop to end after its current round (a blocking outbox read ends at once)."""
        self._stopping.set()
        self._wake.set()
        if self._read is not None and not self._read.done():
            self._read.cancel()

    async def close(self) -> None:
        """Cancel the attempts in flight (their deliveries come due again after their lease) and close the
        connection pools; after the loop ended."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._sender.aclose()

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._keys.webhook_outbox(), WEBHOOK_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_outbox(self, after: str) -> bool:
        """Fan out one batch: this consumer's pending entries (after "0") or new ones (">", blocking up to
        IDLE_S). Returns whether pending entries remain to be read again."""
        block = None if after == "0" else int(self.idle_s * 1000)
        reply = await self._redis.xreadgroup(
            WEBHOOK_GROUP, self._name, {self._keys.webhook_outbox(): after}, count=_BATCH, block=block
        )
        entries = [entry for _, batch in reply or [] for entry in batch]
        await self._fan_out_all(entries)
        if entries:
            self._wake.set()  # deliveries left for want of room are due now: the dispatch looks at once
        return after == "0" and len(entries) == _BATCH

    async def _fan_out_all(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Fan out entries a few at a time (each is its own script: no order between them matters)."""
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        for start in range(0, len(entries), _FAN_OUT_AT_ONCE):
            chunk = entries[start : start + _FAN_OUT_AT_ONCE]
            await asyncio.gather(*(self._fan_out(entry_id, fields) for entry_id, fields in chunk))

    async def _reclaim(self) -> None:
        """Take over outbox entries a dead deliverer read but never fanned out."""
        reply = await self._redis.xautoclaim(
            self._keys.webhook_outbox(), WEBHOOK_GROUP, self._name, self._reclaim_idle_ms, "0-0", count=_BATCH
        )
        await self._fan_out_all(list(reply[1]) if reply else [])

    async def _fan_out(self, entry_id: str, fields: dict[str, str]) -> None:
        """One outbox entry -> its deliveries (one script: they exist and the entry is acknowledged)."""
        tenant_id, job_id = fields.get("tenant_id", ""), fields.get("job_id", "")
        if fields.get("type") not in _EVENTS or not tenant_id or ":" in tenant_id + job_id:
            log.warning("webhooks.malformed_entry", entry_id=entry_id, type=fields.get("type"))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self._keys.webhook_outbox(), WEBHOOK_GROUP, entry_id)
                pipe.xdel(self._keys.webhook_outbox(), entry_id)
                await pipe.execute()
            return
        event = WebhookEvent(fields["type"])
        at_ms = int(entry_id.split("-", 1)[0])
        timestamp = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hvals(self._keys.webhook_endpoints(tenant_id))
            pipe.hgetall(self._keys.job(job_id or "-"))
            endpoints_raw, raw = await pipe.execute()
        endpoints = [EndpointRecord.model_validate_json(r) for r in endpoints_raw]
        targets = [(e.endpoint_id, e.url) for e in endpoints if event in e.events]
        data: dict[str, Any] = codec.loads(fields["data"]) if fields.get("data") else {}
        if job_id and raw:
            status = JobStatus.from_hash(job_id, raw)
            data = status.model_dump(mode="json", exclude={"webhooks"})
            callback = raw.get(CALLBACK_URL_FIELD)
            if callback and event in JOB_WEBHOOK_EVENTS:
                targets.append((callback_endpoint_id(callback), callback))
        elif job_id:
            data = {"job_id": job_id, **data}
        msg_id = f"msg_{entry_id}"
        body = body_json(event.value, timestamp, data)
        planned = []
        keys = [self._keys.webhook_outbox(), self._keys.webhook_ready()]
        room = self._settings.webhook_concurrency - len(self._tasks)
        for endpoint_id, url in targets:
            delivery_id = f"{msg_id}.{endpoint_id}"
            target = target_of(tenant_id, endpoint_id)
            keys += [self._keys.webhook_delivery(delivery_id), self._keys.webhook_due(target)]
            claim = room > 0 and self._inflight[target] < self._settings.webhook_endpoint_concurrency
            if claim:  # started here at once: no trip through the due set
                room -= 1
                self._inflight[target] += 1
            planned.append({
                "target": target,
                "delivery_id": delivery_id,
                "claim": claim,
                "fields": {
                    "msg_id": msg_id, "target": target, "tenant_id": tenant_id, "endpoint_id": endpoint_id,
                    "type": event.value, "job_id": job_id, "agent_id": fields.get("agent_id", ""),
                    "url": url, "body": body, "event_ms": at_ms,
                },
            })  # fmt: skip
        args = {
            "entry": entry_id, "group": WEBHOOK_GROUP, "now_ms": clock.now_ms(), "lease_ms": self._lease_ms,
            "targets": planned,
        }  # fmt: skip
        try:
            claimed = await self._fanout(keys=keys, args=[codec.dumps(args)])
        finally:
            for target in (t["target"] for t in planned if t["claim"]):
                self._release(target)  # taken again below for each delivery the script did claim
        self._start(claimed)
        log.debug("webhooks.fanned_out", msg_id=msg_id, type=event.value, deliveries=len(planned))

    def _release(self, target: str) -> None:
        self._inflight[target] -= 1
        if self._inflight[target] <= 0:
            del self._inflight[target]

    def _start(self, claimed: list[Any]) -> None:
        """Start an attempt for each claimed delivery ({id, attempt, fields, ...} from the Lua)."""
        for delivery_id, attempt, flat in zip(claimed[::3], claimed[1::3], claimed[2::3], strict=True):
            raw = dict(zip(flat[::2], flat[1::2], strict=True))
            self._inflight[raw["target"]] += 1
            task = asyncio.create_task(self._attempt(raw["target"], str(delivery_id), int(attempt), raw))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_due(self) -> float:
        """Claim and start due deliveries, per target as many as its concurrency limit leaves room for;
        how long to wait before looking again (an attempt's end wakes the loop sooner)."""
        room = self._settings.webhook_concurrency - len(self._tasks)
        if room <= 0:
            return self.idle_s
        now = clock.now_ms()
        # The ready index in due order, one read: the targets due now, and when the next one is.
        ready = await self._redis.zrange(self._keys.webhook_ready(), 0, 499, withscores=True)
        targets = [target for target, due in ready if due <= now]
        later = [due for _, due in ready if due > now]
        wait_s = min(self.idle_s, max(self.poll_s, (later[0] - now) / 1000)) if later else self.idle_s
        if len(targets) == len(ready) == 500:  # more than one read's worth due: look again soon
            wait_s = self.poll_s
        for target in targets:
            free = min(room, self._settings.webhook_endpoint_concurrency - self._inflight[target])
            if free <= 0:
                continue
            due_key = self._keys.webhook_due(target)
            ids = await self._redis.zrangebyscore(due_key, "-inf", now, start=0, num=free)
            if not ids:
                continue
            keys = [self._keys.webhook_ready(), due_key, *(self._keys.webhook_delivery(i) for i in ids)]
            claimed = await self._claim(keys=keys, args=[now, self._lease_ms, target, *ids])
            self._start(claimed)
            room -= len(claimed) // 3
            if room <= 0:
                return wait_s
        return wait_s

    async def _attempt(self, target: str, delivery_id: str, attempt: int, raw: dict[str, str]) -> None:
        try:
            await self._deliver(target, delivery_id, attempt, raw)
        except (RedisError, *UNREACHABLE) as exc:  # the lease runs out and it is tried again
            log.warning("webhooks.attempt_unrecorded", delivery_id=delivery_id, error=type(exc).__name__)
        finally:
            self._release(target)
            self._wake.set()

    async def _deliver(self, target: str, delivery_id: str, attempt: int, raw: dict[str, str]) -> None:
        tenant_id, url = raw["tenant_id"], raw["url"]
        if attempt == 1:
            metrics.WEBHOOK_LAG.observe(max(0.0, (clock.now_ms() - int(raw.get("event_ms") or 0)) / 1000))
        signer = target_of(tenant_id, CALLBACK) if raw["endpoint_id"].startswith("cb_") else target
        policy, secret = await self._signing(tenant_id, signer)
        problem = url_problem(url, policy) or ("" if secret else "no signing secret (endpoint removed?)")
        if problem:
            answer = Answer(None, 0, error="not_allowed", refused=True)
            log.warning("webhooks.refused", delivery_id=delivery_id, reason=problem)
        else:
            body = raw["body"].encode()
            headers = signed_headers(secret or "", raw["msg_id"], int(time.time()), body)
            answer = await self._sender.post(url, headers, body, allow_private=policy.allow_private)
        outcome = attempt_outcome(answer.status, gave_up_connecting=answer.refused)
        now = clock.now_ms()
        next_ms = now
        if outcome is AttemptOutcome.RETRY:
            tries = attempt - int(raw.get("rebased") or 0)
            delay = retry_delay_s(
                tries,
                base_s=self._settings.webhook_retry_base_s,
                cap_s=self._settings.webhook_retry_cap_s,
                jitter=random.random(),
                retry_after_s=answer.retry_after_s,
            )
            next_ms = now + int(delay * 1000)
            if next_ms - int(raw.get("created_ms") or now) > self._settings.webhook_retry_window_s * 1000:
                outcome = AttemptOutcome.DEAD
        await self._record(raw, delivery_id, target, attempt, answer, outcome, next_ms, now)

    async def _signing(self, tenant_id: str, signer: str) -> tuple[WebhookPolicy, str | None]:
        """The tenant's allow list and the target's secret, read at most once a second: a change (a host
        taken off the list, a rotated secret) applies within CONFIG_CACHE_S."""
        now = time.monotonic()
        cached = self._config.get(signer)
        if cached is None or now - cached[0] > CONFIG_CACHE_S:
            cached = (now, await self._store.policy(tenant_id), await self._store.secret(signer))
            if len(self._config) > 10_000:
                self._config.clear()
            self._config[signer] = cached
        return cached[1], cached[2]

    async def _record(
        self, raw: dict[str, str], delivery_id: str, target: str, attempt: int, answer: Answer,
        outcome: AttemptOutcome, next_ms: int, now: int,
    ) -> None:  # fmt: skip
        event, job_id = WebhookEvent(raw["type"]), raw.get("job_id", "")
        status_class = f"{answer.status // 100}xx" if answer.status else "none"
        metrics.WEBHOOK_ATTEMPTS.labels(event.value, outcome.value, status_class).inc()
        metrics.WEBHOOK_SECONDS.labels(outcome.value).observe(answer.latency_ms / 1000)
        record = {
            "delivery_id": delivery_id, "endpoint_id": raw["endpoint_id"], "event": event.value,
            "attempt": attempt, "status": answer.status, "latency_ms": answer.latency_ms,
            "outcome": outcome.value, "error": answer.error, "at": clock.now_iso(),
        }  # fmt: skip
        args: dict[str, Any] = {
            "id": delivery_id, "target": target, "attempt": attempt, "outcome": outcome.value,
            "next_ms": next_ms, "now_ms": now, "status": str(answer.status or ""),
            "ttl_s": self._settings.result_ttl_s, "job": bool(job_id), "record": codec.dumps(record),
            "keep": KEEP_ON_JOB,
        }  # fmt: skip
        if event is WebhookEvent.JOB_TERMINAL and outcome is AttemptOutcome.DELIVERED:
            args["ledger"] = codec.dumps(
                ledger_event(
                    EventKind.WEBHOOK_DELIVERED,
                    job_id=job_id,
                    agent_id=raw.get("agent_id") or None,
                    tenant_id=raw["tenant_id"],
                    attempt=attempt,
                    payload={
                        "delivery_id": delivery_id,
                        "msg_id": raw["msg_id"],
                        "endpoint_id": raw["endpoint_id"],
                        "status": answer.status,
                    },
                )
            )
        k = self._keys
        keys = [
            k.webhook_delivery(delivery_id), k.webhook_due(target), k.webhook_ready(), k.webhook_dead(),
            k.job(job_id or "-"), k.ledger_stream(),
        ]  # fmt: skip
        recorded = await self._finish(keys=keys, args=[codec.dumps(args)])
        log.info(
            "webhooks.attempt",
            delivery_id=delivery_id,
            endpoint_id=raw["endpoint_id"],
            type=event.value,
            attempt=attempt,
            status=answer.status,
            latency_ms=answer.latency_ms,
            outcome=outcome.value,
            error=answer.error,
            recorded=bool(recorded),
        )
