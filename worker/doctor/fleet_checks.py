"""`plangate doctor`'s checks of the running fleet: workers on this queue, and the one ledger writer."""

from __future__ import annotations

from redis.asyncio import Redis

from plangate_base import codec
from plangate_base.checks import CheckResult, fail, ok, warn
from plangate_base.clock import now_ms
from worker.keys import Keys
from worker.settings import Settings

LATE_AFTER_BEATS = 3  # a worker whose last beat is older than this many of its own intervals is late


async def workers(redis: Redis, keys: Keys, settings: Settings) -> CheckResult:
    """Live workers taking jobs, what they run (mixed versions are a warning), their oldest beat (a
    worker that missed beats, still counted live, is a warning: it is frozen or starved of CPU)."""
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
    described = {worker: codec.loads(i) for worker, i in zip(beats, infos, strict=True) if i}
    versions = sorted({str(d.get("version")) for d in described.values()})
    slots = sum(int(d.get("concurrency", 0)) for d in described.values())
    now = now_ms()
    oldest_s = (now - min(beats.values())) / 1000
    why = (
        f"{len(beats)} worker(s), {slots} job slots, version {', '.join(versions) or '?'}, "
        f"oldest beat {oldest_s:.1f} s ago"
    )
    fixes = []
    if len(versions) > 1:
        fixes.append("finish the rolling upgrade: run one version of plangate on every worker")
    late = []
    for worker, at in sorted(beats.items()):
        every_s = float(described.get(worker, {}).get("beat_s") or settings.watchdog_interval_s)
        if (now - at) / 1000 > LATE_AFTER_BEATS * every_s:
            late.append(f"{worker} ({(now - at) / 1000:.1f} s, beats every {every_s:g} s)")
    if late:
        why += f"; late beats: {', '.join(late)}"
        fixes.append(
            "a worker that misses beats is frozen or starved of CPU, and its jobs are taken over once "
            "silent HEARTBEAT_TIMEOUT_S: look at its host's load and its log"
        )
    if fixes:
        return warn(name, why, "; ".join(fixes))
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
