"""The fair queue: in which order workers take queued jobs (weighted fair share across tenants, priorities
with aging, delayed starts, pause), beside the queue backend, which still holds every job.

Each tenant has a sorted set of its ready jobs (by governance.fair_share.order_score); the tenants with
ready work sit in one sorted set scored by their pass (stride scheduling). A worker with free slots asks
PICK for the tenant with the lowest pass; PICK takes that tenant's best job, advances its pass by 1/weight
and goes on while it stays the lowest, then names the next tenant. Every step is O(log n) in the backlog;
no scan of all tenants' queues. Delayed jobs wait in one set by start time and move to ready when due;
a paused tenant leaves the tenants set; a paused agent's jobs are parked when a pick meets them.

A job picked but never started (its worker skipped it, or died before START) is recorded in the picked
set; the worker gives back what it skipped at once and the watchdog what a dead worker left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from governance.fair_share import PAUSE_SEPARATOR, deadline_ms, order_score, pause_field, start_ms
from governance.models import PlanRequest
from governance.registry import AgentRegistry, TenantRegistry
from plangate_base import clock, codec
from plangate_base.clock import now_iso
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, EventKind, JobState, PauseScope
from worker import fair_lua
from worker.errors import BadRequest
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.queue_backend import JobQueue
from worker.settings import STATS_TTL_S

DELAYED_CHECK_S = 1.0
"""How often a picking worker looks for delayed jobs that came due (a delayed job starts this much late at
most, plus the idle worker's poll interval)."""
_MAX_SWITCHES = 64  # tenant switches one pick may make (each one round trip)
_PROMOTE_BATCH = 100
_OLDEST_AMONG = 10  # a tenant's oldest queued job is looked for among its next this many


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a submitted job went in the fair queue: its order score and when it may start (ms)."""

    score: int
    start_ms: int


class FairQueue:
    """The fair order of one deployment's queued jobs (see the module docstring)."""

    def __init__(
        self, redis: Redis, keys: Keys, queue: JobQueue, *, aging_s: float, stats_ttl_s: int = STATS_TTL_S
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._queue = queue
        self._aging_ms = int(aging_s * 1000)
        self._stats_ttl_s = stats_ttl_s
        self._next_tenant = ""  # the tenant the last PICK named
        self._delayed_check_at = 0.0
        self._move_ready = redis.register_script(fair_lua.MOVE_READY)
        self._pick = redis.register_script(fair_lua.PICK)
        self._reready = redis.register_script(fair_lua.REREADY)
        self._pause = redis.register_script(fair_lua.PAUSE)
        self._resume = redis.register_script(fair_lua.RESUME)

    def enqueue_step(
        self, job_id: str, req: PlanRequest, *, enqueue_ms: int
    ) -> tuple[Placed, list[str], list[Any]]:
        """Where a new job goes in the fair queue, and the keys and arguments of fair_lua.ENQUEUE_BODY that
        put it there (the submit runs it as one step of its atomic writes)."""
        k = self._keys
        placed = Placed(
            order_score(enqueue_ms, req.priority, self._aging_ms),
            start_ms(enqueue_ms, req.not_before, req.delay_s),
        )
        due = deadline_ms(req.deadline)
        keys = [
            k.fair_tenants(), k.fair_ready(req.tenant_id), k.paused(), k.fair_tenant(req.tenant_id),
            k.fair_clock(), k.fair_jobs(), k.fair_delayed(), k.fair_deadlines(),
        ]  # fmt: skip
        args = [
            job_id, req.tenant_id, req.agent_id, placed.score, enqueue_ms, placed.start_ms,
            "" if due is None else due, enqueue_ms,
        ]  # fmt: skip
        return placed, keys, args

    async def pick(self, want: int) -> list[str]:
        """Up to `want` job ids in fair order, each taken out of the fair queue (and marked picked).

        The tenant to ask is the one the last PICK named (PICK refuses one that is no longer the lowest
        and names the right one), so a pick is one round trip when nothing changed in between; delayed
        jobs that came due are moved first, looked for every DELAYED_CHECK_S."""
        if want <= 0:
            return []
        now = clock.now_ms()
        k = self._keys
        if time.monotonic() >= self._delayed_check_at:
            self._delayed_check_at = time.monotonic() + DELAYED_CHECK_S
            if await self.promote_due(now):
                self._next_tenant = ""
        tenant = self._next_tenant
        if not tenant:
            top = await self._redis.zrange(k.fair_tenants(), 0, 0)
            tenant = top[0] if top else ""
        picked: list[str] = []
        starts = k.fair_starts(clock.utc_minute())
        for _ in range(_MAX_SWITCHES):
            if not tenant or len(picked) >= want:
                break
            keys = [
                k.fair_tenants(), k.fair_ready(tenant), k.fair_jobs(), k.paused(), k.fair_parked(),
                k.tenant(tenant), k.fair_tenant(tenant), k.fair_clock(), k.fair_picked(), starts,
            ]  # fmt: skip
            reply = await self._pick(keys=keys, args=[tenant, want - len(picked), now, self._stats_ttl_s])
            tenant = reply[0]
            picked.extend(reply[1:])
        self._next_tenant = tenant
        return picked

    async def adopt_unindexed(self, *, batch: int = 500) -> int:
        """Index the queued jobs the backend holds without a place in the fair queue (submitted by a
        plangate before it, or by a producer not upgraded yet), so no job waits forever: a scan of the
        backend's queue in batches, run once at worker start, never on a pick. Returns how many."""
        k = self._keys
        adopted = 0
        start = 0
        while True:
            entries = await self._redis.zrange(
                self._queue.queue_key, start, start + batch - 1, withscores=True
            )
            if not entries:
                return adopted
            start += len(entries)
            ids = [job_id for job_id, _ in entries]
            metas = await self._redis.hmget(k.fair_jobs(), ids)
            for (job_id, due), meta in zip(entries, metas, strict=True):
                if meta is None:
                    adopted += await self._adopt(job_id, int(due))

    async def _adopt(self, job_id: str, due_ms: int) -> int:
        names = ["state", "tenant_id", "agent_id", "submitted_at", "request"]
        fields = await self._redis.hmget(self._keys.job(job_id), names)
        state, tenant_id, agent_id, submitted, request_json = fields
        if state != JobState.QUEUED.value or not tenant_id or not agent_id or not submitted:
            return 0
        if await self._redis.exists(self._queue.claim_key(job_id)):
            return 0  # a worker of the old order is starting it
        try:
            req = PlanRequest.model_validate_json(request_json or "{}")
        except ValueError:
            req = None
        submitted_ms = clock.ms_of(submitted)
        priority = req.priority if req else None
        deadline = deadline_ms(req.deadline) if req else None
        k = self._keys
        keys = [
            k.fair_tenants(), k.fair_ready(tenant_id), k.paused(), k.fair_tenant(tenant_id),
            k.fair_clock(), k.fair_jobs(), k.fair_delayed(), k.fair_deadlines(),
        ]  # fmt: skip
        args = [
            job_id, tenant_id, agent_id, order_score(submitted_ms, priority, self._aging_ms), submitted_ms,
            due_ms, "" if deadline is None else deadline, clock.now_ms(),
        ]  # fmt: skip
        await self._redis.eval(fair_lua.ENQUEUE, len(keys), *keys, *args)
        return 1

    async def promote_due(self, now_ms: int) -> int:
        """Move delayed jobs whose start time came to their tenant's ready set; returns how many."""
        k = self._keys
        ids = await self._redis.zrangebyscore(k.fair_delayed(), "-inf", now_ms, start=0, num=_PROMOTE_BATCH)
        return await self._move(k.fair_delayed(), ids)

    async def _move(self, source: str, ids: list[str]) -> int:
        if not ids:
            return 0
        k = self._keys
        metas = await self._redis.hmget(k.fair_jobs(), ids)
        moved = 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, meta in zip(ids, metas, strict=True):
                if meta is None:  # it ended: only its entry is left
                    pipe.zrem(source, job_id)
                    continue
                tenant, _, score, _ = meta.split(" ")
                keys = [
                    source, k.fair_tenants(), k.fair_ready(tenant), k.paused(), k.fair_tenant(tenant),
                    k.fair_clock(),
                ]  # fmt: skip
                await self._move_ready(keys=keys, args=[job_id, tenant, score], client=pipe)
            for result in await pipe.execute():
                moved += int(result)
        return moved

    async def give_back(self, job_ids: list[str], *, claim_ttl_s: float, stale_s: float | None = None) -> int:
        """Put picked jobs that did not start back in their place (None `stale_s`: only those no claim
        holds; else also those whose claim is older than `stale_s`). Returns how many went back."""
        if not job_ids:
            return 0
        k = self._keys
        metas = await self._redis.hmget(k.fair_jobs(), job_ids)
        back = 0
        for job_id, meta in zip(job_ids, metas, strict=True):
            if meta is None:
                await self._redis.zrem(k.fair_picked(), job_id)
                continue
            tenant, _, score, _ = meta.split(" ")
            keys = [
                k.fair_picked(), k.job(job_id), self._queue.claim_key(job_id), k.fair_tenants(),
                k.fair_ready(tenant), k.paused(), k.fair_tenant(tenant), k.fair_clock(),
            ]  # fmt: skip
            stale = "" if stale_s is None else int(stale_s * 1000)
            args = [job_id, tenant, score, int(claim_ttl_s * 1000), stale]
            back += int(await self._reready(keys=keys, args=args))
        return back

    async def lost_picks(self, older_than_s: float, limit: int = 50) -> list[str]:
        """Jobs picked longer ago than `older_than_s` that never started (their worker may be gone)."""
        cutoff = clock.now_ms() - int(older_than_s * 1000)
        key = self._keys.fair_picked()
        return list(await self._redis.zrangebyscore(key, "-inf", cutoff, start=0, num=limit))

    async def past_deadline(self, now_ms: int, limit: int = 100) -> list[str]:
        """Queued jobs whose deadline passed."""
        key = self._keys.fair_deadlines()
        return list(await self._redis.zrangebyscore(key, "-inf", now_ms, start=0, num=limit))

    async def forget_deadline(self, job_id: str) -> None:
        """Stop watching a job's deadline (it is no longer queued)."""
        await self._redis.zrem(self._keys.fair_deadlines(), job_id)

    async def pause(self, scope: PauseScope, target: str, *, by: str, reason: str) -> bool:
        """Pause a tenant's, an agent's or all work: queued jobs stay queued, running ones finish; the ledger
        records who, when and why. False when it was paused already; BadRequest for a tenant or an agent
        that does not exist (a mistyped id would otherwise pause nothing, and say it did)."""
        k = self._keys
        if scope is PauseScope.TENANT and await TenantRegistry(self._redis, k).get(target) is None:
            raise BadRequest(f"no tenant with id {target!r} (`plangate tenants list`)")
        if scope is PauseScope.AGENT and await AgentRegistry(self._redis, k).get(target) is None:
            raise BadRequest(f"no agent with id {target!r} (`plangate agents list`)")
        tenant = target if scope is PauseScope.TENANT else ""
        event = self._event(EventKind.PAUSED, scope, target, by=by, reason=reason)
        who = codec.dumps({"by": by, "at": now_iso(), "reason": reason})
        keys = [k.paused(), k.ledger_stream(), k.fair_tenants(), k.fair_tenant(tenant or "-")]
        args = [pause_field(scope, target), who, LEDGER_STREAM_FIELD, codec.dumps(event), tenant]
        return bool(await self._pause(keys=keys, args=args))

    async def resume(self, scope: PauseScope, target: str, *, by: str, reason: str = "") -> bool:
        """Resume what `pause` paused; workers are woken at once. False when it was not paused."""
        k = self._keys
        tenant = target if scope is PauseScope.TENANT else ""
        event = self._event(EventKind.RESUMED, scope, target, by=by, reason=reason)
        keys = [
            k.paused(), k.ledger_stream(), k.fair_tenants(), k.fair_ready(tenant or "-"),
            k.fair_tenant(tenant or "-"), k.fair_clock(),
        ]  # fmt: skip
        args = [pause_field(scope, target), LEDGER_STREAM_FIELD, codec.dumps(event), tenant]
        resumed = bool(await self._resume(keys=keys, args=args))
        if resumed and scope is PauseScope.AGENT:
            await self._unpark(target)
        if resumed:
            await self._redis.publish(k.wake(), "resume")
        return resumed

    async def _unpark(self, agent_id: str) -> int:
        """Give a resumed agent's parked jobs back to their tenants' ready sets (an operator's action:
        it reads the parked set, which holds paused agents' jobs only)."""
        k = self._keys
        parked = await self._redis.zrange(k.fair_parked(), 0, -1)
        if not parked:
            return 0
        metas = await self._redis.hmget(k.fair_jobs(), parked)
        mine = [job for job, meta in zip(parked, metas, strict=True) if meta and meta.split()[1] == agent_id]
        return await self._move(k.fair_parked(), mine)

    async def paused(self) -> dict[str, dict[str, Any]]:
        """What is paused now: pause field -> who, when and why."""
        raw = await self._redis.hgetall(self._keys.paused())
        return {field: codec.loads(value) for field, value in raw.items()}

    async def tenants_view(self, now_ms: int) -> dict[str, dict[str, Any]]:
        """Per tenant (registered, with ready work, or started lately): ready jobs, running jobs, the age
        of the oldest of its next jobs, its weight-free share of starts over this and the last UTC minute,
        and whether it is paused. O(tenants) reads: for stats, never on a worker's path."""
        k = self._keys
        minutes = [clock.utc_minute(now_ms / 1000 - 60), clock.utc_minute(now_ms / 1000)]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(k.tenants())
            pipe.zrange(k.fair_tenants(), 0, -1)
            pipe.hgetall(k.paused())
            for minute in minutes:
                pipe.hgetall(k.fair_starts(minute))
            registered, active, paused, *starts = await pipe.execute()
        started: dict[str, int] = {}
        for counts in starts:
            for tenant_id, n in counts.items():
                started[tenant_id] = started.get(tenant_id, 0) + int(n)
        prefix = pause_field(PauseScope.TENANT, "")
        paused_tenants = {f.split(PAUSE_SEPARATOR, 1)[1] for f in paused if f.startswith(prefix)}
        tenants = sorted(set(registered) | set(active) | set(started) | paused_tenants)
        if not tenants:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.zcard(k.fair_ready(tenant_id))
                pipe.zrange(k.fair_ready(tenant_id), 0, _OLDEST_AMONG - 1)
                pipe.zcard(k.tenant_running(tenant_id))
            replies = await pipe.execute()
        heads = [job_id for i in range(len(tenants)) for job_id in replies[3 * i + 1]]
        submitted = (
            dict(zip(heads, await self._redis.hmget(k.fair_jobs(), heads), strict=True)) if heads else {}
        )
        total = sum(started.values())
        view: dict[str, dict[str, Any]] = {}
        for i, tenant_id in enumerate(tenants):
            queued, head, running = replies[3 * i : 3 * i + 3]
            times = [int(m.split(" ")[3]) for m in (submitted.get(j) for j in head) if m]
            view[tenant_id] = {
                "queued": int(queued),
                "running": int(running),
                "oldest_queued_age_s": round((now_ms - min(times)) / 1000, 3) if times else None,
                "starts_last_minute": started.get(tenant_id, 0),
                "share_of_starts": round(started.get(tenant_id, 0) / total, 3) if total else 0.0,
                "paused": tenant_id in paused_tenants,
            }
        return view

    async def held_counts(self) -> dict[str, int]:
        """Queued jobs not in any tenant's ready set: delayed (not due), parked (paused agents)."""
        k = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(k.fair_delayed())
            pipe.zcard(k.fair_parked())
            delayed, parked = await pipe.execute()
        return {"delayed": int(delayed), "parked": int(parked)}

    def _event(
        self, kind: EventKind, scope: PauseScope, target: str, *, by: str, reason: str
    ) -> dict[str, Any]:
        return ledger_event(
            kind,
            job_id=None,
            agent_id=target if scope is PauseScope.AGENT else None,
            tenant_id=target if scope is PauseScope.TENANT else None,
            worker=by,
            reason=reason or None,
            payload={"scope": scope.value, "target": target, "by": by},
        )


class FairPicker:
    """A worker's Picker (worker.queue_backend.Picker) on the fair queue."""

    def __init__(self, fair: FairQueue, claim_ttl_s: float) -> None:
        self._fair = fair
        self._claim_ttl_s = claim_ttl_s

    async def pick(self, want: int) -> list[str]:
        """Up to `want` jobs in fair order."""
        return await self._fair.pick(want)

    async def give_back(self, job_ids: list[str]) -> None:
        """Jobs the backend did not start go back to their place (unless another claim holds them)."""
        await self._fair.give_back(job_ids, claim_ttl_s=self._claim_ttl_s)
