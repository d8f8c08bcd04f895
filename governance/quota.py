"""Tenant quotas: what a job must reserve (pure), and the atomic admission in Redis (a thin adapter).

Admission is one Lua script over the tenant's counters, so any number of workers racing cannot
overshoot: concurrency and jobs-per-minute are counted per admission, tokens (and cost, when
prices are configured) are reserved before the LLM call and settled when the job ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from governance.models import TenantRecord
from governance.policy import Refuse
from governance.vocabulary import RefusalCode
from plangate_base import clock

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
    """The key names admission needs."""

    def tenant_running(self, tenant_id: str) -> str: ...

    def tenant_minute(self, tenant_id: str) -> str: ...

    def tenant_day(self, tenant_id: str, day: str) -> str: ...

    def ledger_stream(self) -> str: ...


# KEYS: running, minute, day, the job's status hash, the ledger stream. ARGV: job id, now ms, max
# concurrent, per minute, tokens/day, cost/day ('' = no limit), tokens to reserve, cost to reserve,
# stale ms (running entries older are dropped), prompt estimate, price per million prompt /
# completion tokens, day, the `admitted` ledger event ('' = none: a tenant without limits).
# The reservation is written on the job's status hash (q_* fields) so that whoever ends the job --
# its worker at RECORD, or a watchdog taking it over -- settles exactly what was reserved.
# Returns {1} admitted, or {0, limit name, ms until it resets}.
NOW_MS = "__NOW_MS__"  # replaced by the Redis server's time (ms) inside the script

_ADMIT = """
local NOW_MS = '__NOW_MS__'
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[9]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, 'max_concurrent', 0}
end
if ARGV[4] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, 'jobs_per_minute', tonumber(oldest[2]) + 60000 - now}
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
redis.call('PEXPIRE', KEYS[2], 120000)
redis.call('HINCRBY', KEYS[3], 'reserved', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[3], 'reserved_cost', ARGV[8])
redis.call('EXPIRE', KEYS[3], 172800)
redis.call('HSET', KEYS[4], 'q_tokens', ARGV[7], 'q_cost', ARGV[8], 'q_prompt', ARGV[10],
  'q_pp', ARGV[11], 'q_pc', ARGV[12], 'q_day', ARGV[13])
if ARGV[14] ~= '' then
  -- stamp the admission with the server's clock, the one clock every worker's admissions share
  local t = redis.call('TIME')
  local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('XADD', KEYS[5], '*', 'e', (string.gsub(ARGV[14], '"' .. NOW_MS .. '"', ms, 1)))
end
return {1}
"""


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

    def __init__(self, redis: Redis, keys: QuotaKeys) -> None:
        self._keys = keys
        self._admit = redis.register_script(_ADMIT)

    def keys_for(self, tenant_id: str, day: str) -> tuple[str, ...]:
        """The tenant's running, per-minute and daily keys."""
        k = self._keys
        return k.tenant_running(tenant_id), k.tenant_minute(tenant_id), k.tenant_day(tenant_id, day)

    async def admit(
        self,
        tenant: TenantRecord,
        job_id: str,
        status_key: str,
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
        ]
        keys = [*self.keys_for(tenant.tenant_id, day), status_key, self._keys.ledger_stream()]
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
