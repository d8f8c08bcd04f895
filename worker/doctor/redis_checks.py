"""`plangate doctor`'s Redis/Dragonfly checks: reachable, which server, persistence, every Lua script
plangate runs, and the clock."""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from governance import live_state, quota
from plangate_base.checks import CheckResult, fail, ok, warn
from plangate_base.errors import PlangateError
from worker import fair_lua, lifecycle_lua, review
from worker.atomic_writes import _APPLY, AtomicWrites, register
from worker.client import SUBMIT_WRITES
from worker.queue_backend import arq_queue
from worker.settings import Settings
from worker.webhooks import webhook_lua

MIN_REDIS_MAJOR = 7

# Every Lua script plangate registers, by a name for the report (tests/unit/test_doctor.py holds that
# each `register_script(...)` in the code is one of these).
SCRIPTS: dict[str, str] = {
    "lifecycle.start": lifecycle_lua.START,
    "lifecycle.heartbeat": lifecycle_lua.HEARTBEAT,
    "lifecycle.record": lifecycle_lua.RECORD,
    "lifecycle.request_cancel": lifecycle_lua.REQUEST_CANCEL,
    "lifecycle.requeue": lifecycle_lua.REQUEUE,
    "lifecycle.release_lost_pickups": lifecycle_lua.RELEASE_LOST_PICKUPS,
    "review.decide": review._DECIDE,
    "live_state.acquire": live_state._ACQUIRE,
    "quota.admit": quota._ADMIT,
    "atomic_writes.apply": _APPLY,
    "client.submit_writes": SUBMIT_WRITES,
    "fair.enqueue": fair_lua.ENQUEUE,
    "fair.move_ready": fair_lua.MOVE_READY,
    "fair.pick": fair_lua.PICK,
    "fair.reready": fair_lua.REREADY,
    "fair.pause": fair_lua.PAUSE,
    "fair.resume": fair_lua.RESUME,
    "webhooks.fanout": webhook_lua.FANOUT,
    "webhooks.claim": webhook_lua.CLAIM,
    "webhooks.finish": webhook_lua.FINISH,
    "webhooks.redeliver": webhook_lua.REDELIVER,
    "queue.claim": arq_queue.CLAIM,
}


async def reachable(redis: Redis, url: str) -> CheckResult:
    """PING answers (the client's own timeouts bound the wait)."""
    try:
        await redis.ping()
    except (RedisError, PlangateError, OSError) as exc:
        return fail("redis.reachable", f"{url}: {exc}", "check PLANGATE_REDIS_URL and that the server runs")
    return ok("redis.reachable", f"{url} answers")


async def server(redis: Redis) -> CheckResult:
    """Redis 7 or newer, or DragonflyDB."""
    info: dict[str, Any] = await redis.info("server")
    if "dragonfly_version" in info:
        return ok("redis.server", f"DragonflyDB {info['dragonfly_version']}")
    version = str(info.get("redis_version", "?"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < MIN_REDIS_MAJOR:
        return fail(
            "redis.server", f"Redis {version}", f"plangate needs Redis {MIN_REDIS_MAJOR}+ or DragonflyDB"
        )
    return ok("redis.server", f"Redis {version}")


async def persistence(redis: Redis) -> CheckResult:
    """AOF or RDB snapshots (Dragonfly: snapshots); none means every queued job vanishes on a restart."""
    name = "redis.persistence"
    fix = "turn on AOF (`appendonly yes`) or RDB snapshots (`save 60 1000`); Dragonfly: --snapshot_cron"
    try:
        info: dict[str, Any] = await redis.info("server")
        if "dragonfly_version" in info:
            cron = (await redis.config_get("snapshot_cron")).get("snapshot_cron", "")
            if cron:
                return ok(name, f"Dragonfly snapshots ({cron})")
            return warn(name, "Dragonfly takes no periodic snapshots: a restart loses queued jobs", fix)
        if int((await redis.info("persistence")).get("aof_enabled", 0)) == 1:
            return ok(name, "AOF on")
        save = (await redis.config_get("save")).get("save", "")
    except RedisError as exc:  # CONFIG may be renamed away on a managed server
        return warn(name, f"cannot tell ({exc})", "check the server's persistence settings by hand")
    if save:
        return ok(name, f"RDB snapshots (save {save})")
    return warn(name, "no AOF and no RDB snapshots: a restart loses every queued job and status", fix)


async def scripts(redis: Redis, prefix: str) -> CheckResult:
    """Every script compiles on the server, and the submit's write script runs on scratch keys it
    declares (nothing else is touched; the keys are deleted after)."""
    name = "redis.lua_scripts"
    for script, source in SCRIPTS.items():
        try:
            await redis.script_load(source)
        except RedisError as exc:
            return fail(name, f"script {script} does not load: {exc}", "use Redis 7+ or DragonflyDB")
    scratch = f"{prefix}doctor:{uuid.uuid4().hex[:12]}:"
    writes = AtomicWrites()
    writes.hset(f"{scratch}h", {"checked": "1"})
    writes.incr(f"{scratch}n")
    try:
        await writes.apply(register(redis))
        ran = await redis.hget(f"{scratch}h", "checked") == "1" and await redis.get(f"{scratch}n") == "1"
    except RedisError as exc:
        return fail(name, f"a script with declared keys does not run: {exc}", "see the server's script log")
    finally:
        await redis.delete(f"{scratch}h", f"{scratch}n")
    if not ran:
        return fail(name, "a script ran but its writes are missing", "see the server's script settings")
    return ok(name, f"all {len(SCRIPTS)} scripts load; one ran on scratch keys")


async def clock(redis: Redis, settings: Settings) -> CheckResult:
    """This host's clock against the server's TIME: heartbeats are compared across hosts."""
    name = "redis.clock_skew"
    before = time.time()
    seconds, micros = await redis.time()
    after = time.time()
    skew = abs(seconds + micros / 1e6 - (before + after) / 2)
    tolerance = settings.stale_after_s
    why = f"{skew * 1000:.0f} ms from the server (heartbeat tolerance {tolerance:g} s)"
    fix = "run NTP (chrony/systemd-timesyncd) on this host and the server's"
    if skew >= tolerance:
        return fail(name, why, fix)
    if skew >= tolerance / 4:
        return warn(name, why, fix)
    return ok(name, why)
