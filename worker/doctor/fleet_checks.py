"""`plangate doctor`'s checks of the running fleet: workers on this queue, and the one ledger writer."""

from __future__ import annotations

from redis.asyncio import Redis

from plangate_base import codec
from plangate_base.checks import CheckResult, fail, ok, warn
from plangate_base.clock import now_ms
from worker.keys import Keys
from worker.settings import Settings


async def workers(redis: Redis, keys: Keys, settings: Settings) -> CheckResult:
    """Live workers taking jobs, what they run (mixed versions are a warning), their oldest beat."""
    name = "workers.live"
    since = now_ms() - int(settings.liveness_window_s * 1000)
    beats = dict(await redis.zrangebyscore(keys.workers_accepting(), since, "+inf", withscores=True))
    if not beats:
        return fail(
            name,
            f"no worker of queue {settings.queue_name} beat in the last {settings.liveness_window_s:g} s",
            "start one: `plangate worker` (same PLANGATE_REDIS_URL, PLANGATE_KEY_PREFIX and queue)",
        )
    infos = await redis.hmget(keys.workers_info(), list(beats))
    described = [codec.loads(i) for i in infos if i]
    versions = sorted({str(d.get("version")) for d in described})
    slots = sum(int(d.get("concurrency", 0)) for d in described)
    oldest_s = (now_ms() - min(beats.values())) / 1000
    why = (
        f"{len(beats)} worker(s), {slots} job slots, version {', '.join(versions) or '?'}, "
        f"oldest beat {oldest_s:.1f} s ago"
    )
    if len(versions) > 1:
        return warn(name, why, "finish the rolling upgrade: run one version of plangate on every worker")
    return ok(name, why)


async def ledger_writer(redis: Redis, keys: Keys) -> CheckResult:
    """Exactly one ledger writer holds the writer lock (the others wait as standbys)."""
    holder = await redis.get(keys.ledger_writer_lock())
    if holder is None:
        return fail(
            "ledger.writer",
            "no ledger writer is active: ledger events pile up in Redis, nothing reaches the file",
            "start a worker (its ledger writer takes the lock) or `plangate ledger serve`",
        )
    return ok("ledger.writer", f"one active writer: {holder}")
