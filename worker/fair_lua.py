"""The Lua scripts of the fair queue (worker.fair_queue). Each declares every key it touches (DragonflyDB).

A pick cannot choose a tenant inside Lua (the chosen tenant's keys would be undeclared), so the caller
names the tenant at the top of the tenants set and PICK takes from it while it stays the lowest pass,
returning the next tenant to ask: one round trip per tenant switch, O(log n) each step.

FAIR_FUNCTIONS are embedded by the lifecycle scripts that put a job back (REQUEUE) so that the state
change and the index change are one atomic step.
"""

from __future__ import annotations

from string import Template

from plangate_base.vocabulary import JobState, PauseScope

_WORDS = {
    "queued": JobState.QUEUED.value,
    "all": PauseScope.ALL.value,
    "tenant_scope": PauseScope.TENANT.value,
    "agent_scope": PauseScope.AGENT.value,
}


def _lua(text: str) -> str:
    return Template(text).substitute(_WORDS)


FAIR_FUNCTIONS = _lua("""
-- Put a tenant with ready work among the pickable ones (unless paused): at the virtual time, never below
-- its own pass (a tenant gains nothing by going idle for a moment).
local function fair_activate(tenants, paused, state, clock, tenant)
  if redis.call('HEXISTS', paused, '$tenant_scope:' .. tenant) == 1 then return end
  if redis.call('ZSCORE', tenants, tenant) then return end
  local own = tonumber(redis.call('HGET', state, 'pass') or '0')
  local now = tonumber(redis.call('GET', clock) or '0')
  redis.call('ZADD', tenants, math.max(own, now), tenant)
end

local function fair_ready(tenants, ready, paused, state, clock, tenant, job, score)
  redis.call('ZADD', ready, score, job)
  fair_activate(tenants, paused, state, clock, tenant)
end

-- A queued job's place: tenant, agent, order score, submit ms (nil when it has none).
local function fair_meta(jobs, job)
  local m = redis.call('HGET', jobs, job)
  if not m then return nil end
  return string.match(m, '^(%S+) (%S+) (%S+) (%S+)$$')
end
""")

# KEYS: tenants, ready, paused, fair tenant, clock, jobs, delayed, deadlines.
# ARGV: job id, tenant, agent, order score, submit ms, start ms, deadline ms ('' = none), now ms.
# Returns 1 ready, 0 delayed.
ENQUEUE_BODY = """
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[8], ARGV[7], ARGV[1]) end
if tonumber(ARGV[6]) > tonumber(ARGV[8]) then
  redis.call('ZADD', KEYS[7], ARGV[6], ARGV[1])
  return 0
end
fair_ready(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[1], ARGV[4])
return 1
"""
ENQUEUE = FAIR_FUNCTIONS + ENQUEUE_BODY  # (the submit runs ENQUEUE_BODY as a step of its atomic writes)

# Move a job from a holding set (delayed when due, parked on resume) to its tenant's ready set.
# KEYS: the holding set, tenants, ready, paused, fair tenant, clock. ARGV: job id, tenant, order score.
# Returns 1 moved, 0 not there (another worker moved it, or it ended).
MOVE_READY = (
    FAIR_FUNCTIONS
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
fair_ready(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[2], ARGV[1], ARGV[3])
return 1
"""
)

# Take up to `want` jobs from one tenant while it keeps the lowest pass (none when it is not the lowest
# now: the caller asked on stale knowledge); a job of a paused agent is parked instead.
# KEYS: tenants, ready, jobs, paused, parked, tenant record (JSON), fair tenant, clock, picked, starts of
# this minute. ARGV: tenant, want, now ms, starts ttl s.
# Returns {next tenant to ask ('' = none), job ids...}.
PICK = _lua("""
local t = ARGV[1]
local out = {''}
if redis.call('HEXISTS', KEYS[4], '$all') == 1 then return out end
local pass = redis.call('ZSCORE', KEYS[1], t)
if pass and redis.call('ZRANGE', KEYS[1], 0, 0)[1] ~= t then pass = nil end
if pass then
  pass = tonumber(pass)
  local weight = 1
  local record = redis.call('GET', KEYS[6])
  if record then
    local ok, r = pcall(cjson.decode, record)
    if ok and type(r) == 'table' and type(r.weight) == 'number' and r.weight > 0 then weight = r.weight end
  end
  local want, parked = tonumber(ARGV[2]), 0
  while #out <= want and parked < 1000 do
    local head = redis.call('ZPOPMIN', KEYS[2])
    if #head == 0 then break end
    local m = redis.call('HGET', KEYS[3], head[1])
    local agent = m and string.match(m, '^%S+ (%S+)')
    if agent and redis.call('HEXISTS', KEYS[4], '$agent_scope:' .. agent) == 1 then
      redis.call('ZADD', KEYS[5], head[2], head[1])
      parked = parked + 1
    else
      out[#out + 1] = head[1]
      redis.call('ZADD', KEYS[9], ARGV[3], head[1])
      redis.call('SET', KEYS[8], pass)
      pass = pass + 1 / weight
      redis.call('ZADD', KEYS[1], pass, t)
      if redis.call('ZRANGE', KEYS[1], 0, 0)[1] ~= t then break end
    end
  end
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[1], t)
    redis.call('HSET', KEYS[7], 'pass', pass)
  end
  if #out > 1 then
    redis.call('HINCRBY', KEYS[10], t, #out - 1)
    redis.call('EXPIRE', KEYS[10], ARGV[4])
  end
end
out[1] = redis.call('ZRANGE', KEYS[1], 0, 0)[1] or ''
return out
""")

# Give a picked job that did not start back to its tenant's ready set: its worker skipped it, or died
# between the pick and START. Left alone while a claim younger than the stale age holds it (its start is
# under way). KEYS: picked, status, claim, tenants, ready, paused, fair tenant, clock.
# ARGV: job id, tenant, order score, the claim's full TTL ms, stale age ms ('' = leave any claim).
# Returns 1 ready again, 0 left alone (or no longer queued: dropped from picked).
REREADY = FAIR_FUNCTIONS + _lua("""
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], 'state') ~= '$queued' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then
  if ARGV[5] == '' or tonumber(ARGV[4]) - ttl <= tonumber(ARGV[5]) then return 0 end
  redis.call('DEL', KEYS[3])
end
redis.call('ZREM', KEYS[1], ARGV[1])
fair_ready(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[2], ARGV[1], ARGV[3])
return 1
""")

# Pause: KEYS: paused, ledger, tenants, fair tenant. ARGV: field, who/when/why JSON, ledger entry field,
# ledger event JSON, tenant ('' unless a tenant is paused). Returns 1 paused, 0 paused already.
PAUSE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[5] ~= '' then
  local pass = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if pass then
    redis.call('HSET', KEYS[4], 'pass', pass)
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
end
redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[4])
return 1
"""

# Resume: KEYS: paused, ledger, tenants, ready, fair tenant, clock. ARGV: field, ledger entry field, ledger
# event JSON, tenant ('' unless a tenant is resumed). Returns 1 resumed, 0 was not paused.
RESUME = (
    FAIR_FUNCTIONS
    + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[4] ~= '' and redis.call('ZCARD', KEYS[4]) > 0 then
  fair_activate(KEYS[3], KEYS[1], KEYS[5], KEYS[6], ARGV[4])
end
redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
return 1
"""
)
