"""Tenant quotas: what a job must reserve (pure), and the atomic admission in Redis (a thin adapter).

Admission is one Lua script over the tenant's counters, so any number of workers racing cannot
overshoot: concurrency and jobs-per-minute are counted per admission, tokens (and cost, when
prices are configured) are reserved before the LLM call and settled when the job ends.

This module owns the tenant's running and per-minute sets, its daily account, its usage totals and
each job's reservation hash (see worker.keys): ADMIT writes them, and SETTLE -- a Lua function the
worker's lifecycle scripts embed, since settling must be atomic with ending or requeueing the job --
is the only code that reads a reservation back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from string import Template
from typing import Protocol

from redis.asyncio import Redis

from governance.models import TenantRecord
from governance.policy import Refuse
from plangate_base import clock
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, NOW_MS, RefusalCode

PRICE_UNIT = 1_000_000  # prices are per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in USD per million prompt and completion tokens."""

    prompt: float
    completion: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """What a job holds against its tenant's daily budget until it ends."""

    tokens: int
    cost_usd: float
    prompt_estimate: int


def estimate_prompt_tokens(prompt_chars: int) -> int:
    """A conservative prompt estimate: about 3 characters per token, rounded up."""
    return max(1, math.ceil(prompt_chars / 3))


def reservation_for(
    tenant: TenantRecord, *, prompt_chars: int, max_tokens: int, price: Price | None, model: str
) -> Reservation | Refuse:
    """The worst case a job may spend: its prompt estimate plus max_tokens. With a cost budget and no
    price for the model, refuse (fail closed) rather than run unmetered."""
    prompt = estimate_prompt_tokens(prompt_chars)
    tokens = prompt + max_tokens
    if tenant.cost_per_day_usd is None:
        return Reservation(tokens, 0.0, prompt)
    if price is None:
        return Refuse(
            RefusalCode.QUOTA_EXCEEDED,
            f"tenant {tenant.tenant_id} has a cost budget but model {model!r} has no price configured "
            "(PLANGATE_MODEL_PRICES); refusing rather than running unmetered",
        )
    cost = (prompt * price.prompt + max_tokens * price.completion) / PRICE_UNIT
    return Reservation(tokens, cost, prompt)


class QuotaKeys(Protocol):
    """The key names admission and settlement need."""

    def tenant_running(self, tenant_id: str) -> str: ...

    def tenant_minute(self, tenant_id: str) -> str: ...

    def tenant_day(self, tenant_id: str, day: str) -> str: ...

    def reservation(self, job_id: str) -> str: ...

    def usage(self, tenant_id: str, day: str) -> str: ...

    def ledger_stream(self) -> str: ...


MINUTE_MS = 60_000  # the window of jobs_per_minute
DAY_TTL_S = 2 * 86_400  # how long a tenant's daily account outlives its day (default of QUOTA_DAY_TTL_S)
USAGE_TTL_S = 90 * 86_400  # how long a tenant's usage totals of a day are kept (default of USAGE_TTL_S)

# A job's reservation hash (Keys.reservation) is this module's: written at admission, read back and
# deleted only by SETTLE below (tokens and cost reserved, the prompt estimate, the model's prices per
# PRICE_UNIT tokens, the day it counts against).

# KEYS: running, minute, day, the job's reservation hash, the ledger stream. ARGV: job id, now ms, max
# concurrent, per minute, tokens/day, cost/day ('' = no limit), tokens to reserve, cost to reserve,
# stale ms (running entries older are dropped), prompt estimate, price per million prompt /
# completion tokens, day, the `admitted` ledger event ('' = none: a tenant without limits), day TTL s.
# The reservation is kept in its own hash so that whoever ends the job -- its worker at RECORD, or a
# watchdog taking it over -- settles exactly what was reserved (SETTLE, run inside their scripts).
# Returns {1} admitted, or {0, limit name, ms until it resets}.
_ADMIT = Template("""
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[9]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - $minute_ms)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, 'max_concurrent', 0}
end
if ARGV[4] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, 'jobs_per_minute', tonumber(oldest[2]) + $minute_ms - now}
end
local day = redis.call('HMGET', KEYS[3], 'reserved', 'used', 'reserved_cost', 'cost')
local tokens = (tonumber(day[1]) or 0) + (tonumber(day[2]) or 0)
if ARGV[5] ~= '' and tokens + tonumber(ARGV[7]) > tonumber(ARGV[5]) then
  return {0, 'tokens_per_day', -1}
end
local cost = (tonumber(day[3]) or 0) + (tonumber(day[4]) or 0)
if ARGV[6] ~= '' and cost + tonumber(ARGV[8]) > tonumber(ARGV[6]) then
  return {0, 'cost_per_day_usd', -1}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 2 * $minute_ms)
redis.call('HINCRBY', KEYS[3], 'reserved', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[3], 'reserved_cost', ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[15])
redis.call('HSET', KEYS[4], 'tokens', ARGV[7], 'cost', ARGV[8], 'prompt', ARGV[10],
  'price_prompt', ARGV[11], 'price_completion', ARGV[12], 'day', ARGV[13])
redis.call('EXPIRE', KEYS[4], ARGV[15])
if ARGV[14] ~= '' then
  -- stamp the admission with the server's clock, the one clock every worker's admissions share
  local t = redis.call('TIME')
  local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('XADD', KEYS[5], '*', '$field', (string.gsub(ARGV[14], '"$now_ms"', ms, 1)))
end
return {1}
""").substitute(minute_ms=MINUTE_MS, field=LEDGER_STREAM_FIELD, now_ms=NOW_MS)

SETTLE = Template("""
-- Settle a job's quota reservation and account its usage: the reserved worst case is released, what
-- was really spent is counted against the budget and in the tenant's usage for the day.
-- reservation, running, day_key, usage_key: the job's reservation hash and its tenant's running set,
-- daily account (of the reservation's day) and usage (today); prompt/completion: tokens spent;
-- estimated: '1' when counted without the stream's usage; count_job: count it as one of the day's jobs.
local function settle(reservation, running, day_key, usage_key, job_id, agent_id, prompt, completion,
                      estimated, count_job, usage_ttl)
  local q = redis.call('HMGET', reservation, 'tokens', 'cost', 'price_prompt', 'price_completion')
  local cost = 0
  if q[3] then cost = (prompt * tonumber(q[3]) + completion * tonumber(q[4])) / $price_unit end
  if q[1] then
    redis.call('HINCRBY', day_key, 'reserved', -tonumber(q[1]))
    redis.call('HINCRBYFLOAT', day_key, 'reserved_cost', -tonumber(q[2]))
    redis.call('HINCRBY', day_key, 'used', prompt + completion)
    redis.call('HINCRBYFLOAT', day_key, 'cost', cost)
  end
  redis.call('DEL', reservation)
  redis.call('ZREM', running, job_id)
  if prompt + completion > 0 then
    local a = 'agent:' .. agent_id .. ':'
    redis.call('HINCRBY', usage_key, 'prompt_tokens', prompt)
    redis.call('HINCRBY', usage_key, 'completion_tokens', completion)
    redis.call('HINCRBY', usage_key, a .. 'prompt_tokens', prompt)
    redis.call('HINCRBY', usage_key, a .. 'completion_tokens', completion)
    redis.call('HINCRBYFLOAT', usage_key, 'cost_usd', cost)
    redis.call('HINCRBYFLOAT', usage_key, a .. 'cost_usd', cost)
    if estimated == '1' then redis.call('HINCRBY', usage_key, 'estimated_calls', 1) end
    if count_job then
      redis.call('HINCRBY', usage_key, 'jobs', 1)
      redis.call('HINCRBY', usage_key, a .. 'jobs', 1)
    end
    redis.call('EXPIRE', usage_key, usage_ttl)
  end
end

-- Settle an attempt that ended without the stream's usage (taken over, handed back): it is counted as
-- estimated, its reserved prompt estimate plus the completion tokens its last heartbeat reported.
local function settle_estimated(reservation, running, day_key, usage_key, job_id, agent_id, tokens,
                                usage_ttl)
  local prompt = tonumber(redis.call('HGET', reservation, 'prompt') or '0')
  settle(reservation, running, day_key, usage_key, job_id, agent_id, prompt, tokens, '1', false, usage_ttl)
end
""").substitute(price_unit=PRICE_UNIT)
"""Lua functions that settle a job's reservation, for the lifecycle scripts that end or requeue a job
(they must run inside those scripts, atomically with the state change)."""


def settle_keys(keys: QuotaKeys, job_id: str, tenant_id: str, quota_day: str, today: str) -> list[str]:
    """The keys SETTLE touches, in its argument order: reservation, running, daily account, usage."""
    return [
        keys.reservation(job_id),
        keys.tenant_running(tenant_id),
        keys.tenant_day(tenant_id, quota_day or today),
        keys.usage(tenant_id, today),
    ]


async def reserved_day(redis: Redis, keys: QuotaKeys, job_id: str) -> str:
    """The UTC day a job's reservation counts against ('' when it holds none)."""
    return await redis.hget(keys.reservation(job_id), "day") or ""


def has_limits(tenant: TenantRecord) -> bool:
    """Whether any quota applies to the tenant."""
    return any(
        v is not None
        for v in (
            tenant.max_concurrent,
            tenant.jobs_per_minute,
            tenant.tokens_per_day,
            tenant.cost_per_day_usd,
        )
    )


def _limit(value: float | None) -> str:
    return "" if value is None else str(value)


class QuotaStore:
    """Admits a job against its tenant's quotas, atomically across all workers."""

    def __init__(self, redis: Redis, keys: QuotaKeys, *, day_ttl_s: int = DAY_TTL_S) -> None:
        self._keys = keys
        self._day_ttl_s = day_ttl_s
        self._admit = redis.register_script(_ADMIT)

    def keys_for(self, tenant_id: str, day: str) -> tuple[str, ...]:
        """The tenant's running, per-minute and daily keys."""
        k = self._keys
        return k.tenant_running(tenant_id), k.tenant_minute(tenant_id), k.tenant_day(tenant_id, day)

    async def admit(
        self,
        tenant: TenantRecord,
        job_id: str,
        reservation: Reservation,
        *,
        price: Price | None,
        day: str,
        stale_ms: int,
        admitted_event: str = "",
    ) -> Refuse | None:
        """`admitted_event` (encoded) goes to the ledger with the admission, so the ledger's timestamps
        show when each job held a slot."""
        """Count the job in and reserve its worst case; a refusal names the limit and when it resets."""
        now_ms = clock.now_ms()
        args = [
            job_id,
            now_ms,
            _limit(tenant.max_concurrent),
            _limit(tenant.jobs_per_minute),
            _limit(tenant.tokens_per_day),
            _limit(tenant.cost_per_day_usd),
            reservation.tokens,
            f"{reservation.cost_usd:.8f}",
            stale_ms,
            reservation.prompt_estimate,
            price.prompt if price else 0,
            price.completion if price else 0,
            day,
            admitted_event if has_limits(tenant) else "",
            self._day_ttl_s,
        ]
        keys = [
            *self.keys_for(tenant.tenant_id, day),
            self._keys.reservation(job_id),
            self._keys.ledger_stream(),
        ]
        reply = await self._admit(keys=keys, args=args)
        if int(reply[0]) == 1:
            return None
        limit, reset_ms = str(reply[1]), int(reply[2])
        return Refuse(RefusalCode.QUOTA_EXCEEDED, _quota_message(tenant, limit, reset_ms))


def _quota_message(tenant: TenantRecord, limit: str, reset_ms: int) -> str:
    value = getattr(tenant, limit)
    if limit == "max_concurrent":
        when = "when one of its running jobs ends"
    elif reset_ms >= 0:
        when = f"in {reset_ms / 1000:.1f}s"
    else:
        when = "at 00:00 UTC"
    return f"tenant {tenant.tenant_id} is at its {limit} limit ({value}); it resets {when}"
