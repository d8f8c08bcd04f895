"""The Lua scripts of a job's lifecycle. Each declares every key it touches (DragonflyDB requires it).

Kept apart from StatusStore so the scripts read as one protocol: START claims an attempt,
HEARTBEAT proves it alive, RECORD ends the job once, TAKEOVER and HANDBACK return a job to
the queue without burning one of its tries. The `running` sorted set (job id -> last
heartbeat in ms) is how a watchdog finds abandoned jobs without scanning keys.
"""

from __future__ import annotations

from governance.quota import NOW_MS
from governance.vocabulary import JobState

TERMINAL = "{" + ",".join(f'["{s.value}"]=true' for s in JobState if s.terminal) + "}"

# Settle the job's quota reservation (q_* fields written at admission) and account its usage: the
# reserved worst case is released, what was really spent is counted against the budget and in the
# tenant's usage for the day. Used by RECORD and REQUEUE, so no way of ending a job leaks either.
SETTLE = """
local function settle(status, running, day_key, usage_key, job_id, agent_id, prompt, completion,
                      estimated, count_job)
  local q = redis.call('HMGET', status, 'q_tokens', 'q_cost', 'q_pp', 'q_pc')
  local cost = 0
  if q[3] then cost = (prompt * tonumber(q[3]) + completion * tonumber(q[4])) / 1000000 end
  if q[1] then
    redis.call('HINCRBY', day_key, 'reserved', -tonumber(q[1]))
    redis.call('HINCRBYFLOAT', day_key, 'reserved_cost', -tonumber(q[2]))
    redis.call('HINCRBY', day_key, 'used', prompt + completion)
    redis.call('HINCRBYFLOAT', day_key, 'cost', cost)
    redis.call('HDEL', status, 'q_tokens', 'q_cost')
  end
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
    redis.call('EXPIRE', usage_key, 7776000)
  end
end
"""

# KEYS: status, events, running, [agent state].
# ARGV: now, worker, maxlen, job id, now ms, stale cutoff ms.
# Returns {1, attempt, tries} when claimed; {0, state} when terminal already or running elsewhere
# with a fresh heartbeat; {-1, ""} when unknown.
START = f"""
local terminal = {TERMINAL}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {{-1, ''}} end
if terminal[state] then return {{0, state}} end
if state == 'running' then
  local beat = redis.call('ZSCORE', KEYS[3], ARGV[4])
  if beat and tonumber(beat) > tonumber(ARGV[6]) then return {{0, state}} end
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'phase', 'PREFLIGHT',
  'heartbeat_at', ARGV[1], 'worker', ARGV[2])
redis.call('HDEL', KEYS[1], 'cancel_requested')
if redis.call('HEXISTS', KEYS[1], 'started_at') == 0 then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'phase', 'state', 'running',
  'phase', 'PREFLIGHT', 'attempt', attempt, 'tokens', 0, 'at', ARGV[1])
if KEYS[4] then
  redis.call('HSET', KEYS[4], 'phase', 'PREFLIGHT', 'job_id', ARGV[4], 'heartbeat_at', ARGV[1])
end
return {{1, attempt, tries}}
"""

# KEYS: status, events, agent state, running, then the job's lock keys.
# ARGV: attempt, kind, phase, now, tokens, progress json, maxlen, job id, lock ttl ms, now ms.
# Returns 1 ok, 2 cancel requested, 3 agent revoked, 0 fenced out (other attempt or not running).
HEARTBEAT = """
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'cancel_requested')
if fields[1] ~= 'running' or fields[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'heartbeat_at', ARGV[4], 'progress', ARGV[6],
  'tokens', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'kind', ARGV[2], 'state', 'running',
  'phase', ARGV[3], 'attempt', ARGV[1], 'tokens', ARGV[5], 'at', ARGV[4])
redis.call('HSET', KEYS[3], 'phase', ARGV[3], 'job_id', ARGV[8], 'heartbeat_at', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[10], ARGV[8])
for i = 5, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[8] then redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
end
if redis.call('HGET', KEYS[3], 'revoked') == '1' then return 3 end
if fields[3] == '1' then return 2 end
return 1
"""

# KEYS: status, events, ledger, agent state, agent errors, review queue, locks index, running,
# failed index, tenant running, tenant day (of the reservation), tenant usage (today), stats of this
# minute, then lock keys.
# ARGV: attempt ('queued' = only while queued), state, phase, now, ttl, maxlen, ledger event json,
# job id, now ms, count error (1/0), window ms, budget limit, suspension event json, review (1/0),
# prompt tokens, completion tokens, estimated (1/0), agent id, then field/value pairs to set.
# Returns 1 recorded, 0 refused (terminal already, or another attempt holds the job).
RECORD = (
    SETTLE
    + f"""
local terminal = {TERMINAL}
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if not fields[1] or terminal[fields[1]] then return 0 end
if ARGV[1] == 'queued' then
  if fields[1] ~= 'queued' then return 0 end
elseif fields[1] ~= 'running' or fields[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'phase', ARGV[3],
  'finished_at', ARGV[4], 'heartbeat_at', ARGV[4])
for i = 19, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
settle(KEYS[1], KEYS[10], KEYS[11], KEYS[12], ARGV[8], ARGV[18], tonumber(ARGV[15]),
  tonumber(ARGV[16]), ARGV[17], true)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'terminal', 'state', ARGV[2],
  'phase', ARGV[3], 'attempt', fields[2], 'tokens', 0, 'at', ARGV[4])
local clock = redis.call('TIME')
local now_ms = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
redis.call('XADD', KEYS[3], '*', 'e', (string.gsub(ARGV[7], '"{NOW_MS}"', now_ms, 1)))
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZREM', KEYS[8], ARGV[8])
if ARGV[2] == '{JobState.FAILED.value}' then redis.call('ZADD', KEYS[9], ARGV[9], ARGV[8]) end
redis.call('HINCRBY', KEYS[13], ARGV[2], 1)
local why = redis.call('HGET', KEYS[1], 'reason_code')
if why then redis.call('HINCRBY', KEYS[13], ARGV[2] .. ':' .. why, 1) end
redis.call('EXPIRE', KEYS[13], 7200)
for i = 14, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[8] then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[7], KEYS[i])
  end
end
if ARGV[1] ~= 'queued' then
  redis.call('HSET', KEYS[4], 'phase', ARGV[3], 'job_id', ARGV[8], 'heartbeat_at', ARGV[4])
end
if ARGV[10] == '1' then
  local now = tonumber(ARGV[9])
  redis.call('ZADD', KEYS[5], now, ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[11]))
  redis.call('PEXPIRE', KEYS[5], ARGV[11])
  local spent = redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[12])
  if spent and redis.call('HGET', KEYS[4], 'suspended') ~= '1' then
    redis.call('HSET', KEYS[4], 'suspended', '1', 'suspended_at', ARGV[4])
    redis.call('XADD', KEYS[3], '*', 'e', ARGV[13])
  end
end
if ARGV[14] == '1' then redis.call('ZADD', KEYS[6], ARGV[9], ARGV[8]) end
return 1
"""
)

# Return a running job to the queue: by the watchdog when its heartbeat is stale (TAKEOVER), or by
# its own worker when shutting down (HANDBACK). Either way its try is given back, the old attempt
# is fenced out (state is no longer running under it), and arq may start it again at once.
# KEYS: status, events, running, ledger, the queue's claim key, queue and job key (JobQueue),
# tenant running, tenant day (of the reservation), tenant usage (today).
# ARGV: attempt, now, maxlen, ledger event json, job id, now ms, stale cutoff ms ('' = no check),
# agent id. What the abandoned attempt spent is counted as estimated: its prompt estimate plus the
# tokens its last heartbeat reported.
# Returns 1 returned to the queue, 0 not ours to return (fresh, other attempt, or no longer running),
# -1 the arq job is gone (nothing to run: the caller records a failure).
REQUEUE = (
    SETTLE
    + """
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if fields[1] ~= 'running' or fields[2] ~= ARGV[1] then
  if fields[1] ~= 'running' then redis.call('ZREM', KEYS[3], ARGV[5]) end
  return 0
end
if ARGV[7] ~= '' then
  local beat = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if beat and tonumber(beat) > tonumber(ARGV[7]) then return 0 end
end
if redis.call('EXISTS', KEYS[7]) == 0 then return -1 end
local spent = redis.call('HMGET', KEYS[1], 'q_prompt', 'tokens')
settle(KEYS[1], KEYS[8], KEYS[9], KEYS[10], ARGV[5], ARGV[8], tonumber(spent[1] or '0'),
  tonumber(spent[2] or '0'), '1', false)
redis.call('HDEL', KEYS[1], 'q_prompt', 'tokens')
redis.call('HSET', KEYS[1], 'state', 'queued', 'phase', '', 'heartbeat_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'tries', -1)
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('DEL', KEYS[5])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'phase', 'state', 'queued',
  'phase', '', 'attempt', ARGV[1], 'tokens', 0, 'at', ARGV[2])
redis.call('XADD', KEYS[4], '*', 'e', ARGV[4])
return 1
"""
)

# A worker that died after arq marked a job in progress but before START leaves the job `queued`
# with arq's in-progress mark, which hides it from every worker until the mark expires (the job
# timeout plus 20 s). Free such jobs: still queued here, and marked longer ago than the stale age.
# KEYS: pairs of (status, the queue's claim key). ARGV: the mark's full TTL ms, stale age ms.
# Returns the number of marks cleared.
RELEASE_LOST_PICKUPS = """
local freed = 0
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl > 0 and redis.call('HGET', KEYS[i], 'state') == 'queued'
     and tonumber(ARGV[1]) - ttl > tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[i + 1])
    freed = freed + 1
  end
end
return freed
"""

# KEYS: status. Returns the state; sets cancel_requested when running.
REQUEST_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return state
"""
