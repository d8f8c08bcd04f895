"""The Lua scripts of a job's lifecycle. Each declares every key it touches (DragonflyDB requires it).

Kept apart from StatusStore so the scripts read as one protocol: START claims an attempt,
HEARTBEAT proves it alive, RECORD ends the job once, TAKEOVER and HANDBACK return a job to
the queue without burning one of its tries. The `running` sorted set (job id -> last
heartbeat in ms) is how a watchdog finds abandoned jobs without scanning keys.

The words the scripts write or compare (states, phases, stream kinds, the ledger stream's field) are
the vocabulary's, put into the script text at import (`$name` placeholders), never typed here.
"""

from __future__ import annotations

from string import Template

from governance.quota import SETTLE
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, NOW_MS, JobState, Phase, StreamKind, WebhookEvent
from worker.fair_lua import FAIR_FUNCTIONS
from worker.job_models import CALLBACK_URL_FIELD


def _lua(text: str) -> str:
    """The script with the vocabulary's words in place of its `$name` placeholders."""
    return Template(text).substitute(
        terminal="{" + ",".join(f'["{s.value}"]=true' for s in JobState if s.terminal) + "}",
        queued=JobState.QUEUED.value,
        running=JobState.RUNNING.value,
        failed=JobState.FAILED.value,
        preflight=Phase.PREFLIGHT.value,
        phase_kind=StreamKind.PHASE.value,
        terminal_kind=StreamKind.TERMINAL.value,
        ledger_field=LEDGER_STREAM_FIELD,
        now_ms=NOW_MS,
        job_terminal=WebhookEvent.JOB_TERMINAL.value,
        review_requested=WebhookEvent.REVIEW_REQUESTED.value,
        callback_field=CALLBACK_URL_FIELD,
    )


# KEYS: status, events, running, fair picked, fair deadlines, [agent state].
# ARGV: now, worker, maxlen, job id, now ms, stale cutoff ms.
# The job leaves the fair queue's picked and deadline sets (it started; its deadline is checked once more
# by the pipeline).
# Returns {1, attempt, tries} when claimed; {0, state} when terminal already or running elsewhere
# with a fresh heartbeat; {-1, ""} when unknown.
START = _lua("""
local terminal = $terminal
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, ''} end
redis.call('ZREM', KEYS[4], ARGV[4])
if terminal[state] then return {0, state} end
if state == '$running' then
  local beat = redis.call('ZSCORE', KEYS[3], ARGV[4])
  if beat and tonumber(beat) > tonumber(ARGV[6]) then return {0, state} end
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
redis.call('HSET', KEYS[1], 'state', '$running', 'phase', '$preflight',
  'heartbeat_at', ARGV[1], 'worker', ARGV[2])
redis.call('HDEL', KEYS[1], 'cancel_requested')
if redis.call('HEXISTS', KEYS[1], 'started_at') == 0 then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', '$phase_kind', 'state', '$running',
  'phase', '$preflight', 'attempt', attempt, 'tokens', 0, 'at', ARGV[1])
if KEYS[6] then
  redis.call('HSET', KEYS[6], 'phase', '$preflight', 'job_id', ARGV[4], 'heartbeat_at', ARGV[1])
end
return {1, attempt, tries}
""")

# KEYS: status, events, agent state, running, then the job's lock keys.
# ARGV: attempt, kind, phase, now, tokens, progress json, maxlen, job id, lock ttl ms, now ms.
# Returns 1 ok, 2 cancel requested, 3 agent revoked, 0 fenced out (other attempt or not running).
HEARTBEAT = _lua("""
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'cancel_requested')
if fields[1] ~= '$running' or fields[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'heartbeat_at', ARGV[4], 'progress', ARGV[6],
  'tokens', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'kind', ARGV[2], 'state', '$running',
  'phase', ARGV[3], 'attempt', ARGV[1], 'tokens', ARGV[5], 'at', ARGV[4])
redis.call('HSET', KEYS[3], 'phase', ARGV[3], 'job_id', ARGV[8], 'heartbeat_at', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[10], ARGV[8])
for i = 5, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[8] then redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
end
if redis.call('HGET', KEYS[3], 'revoked') == '1' then return 3 end
if fields[3] == '1' then return 2 end
return 1
""")

# KEYS: status, events, ledger, agent state, agent errors, review queue, locks index, running,
# failed index, reservation, tenant running, tenant day (of the reservation), tenant usage (today),
# stats of this minute, the fair queue's jobs, tenant ready, parked, delayed, deadlines and picked sets
# (the job leaves them all), webhook outbox, webhook subscriptions, then lock keys.
# ARGV[1]: one JSON object (StatusStore.record builds it): attempt (absent = only while queued), state,
# phase ('' for none), now, ttl_s, maxlen, event (the ledger event's JSON text), job_id, agent_id, now_ms,
# fields (status fields to set, text values), spend {prompt, completion, estimated}, review (bool),
# charge {window_ms, limit, event} (absent = not counted against the error budget), stats_ttl_s,
# usage_ttl_s.
# The webhook events of the end (job.terminal, and review.requested for an escalated plan) go to the
# outbox in the same transaction, when the job has a callback_url or its tenant an endpoint for them.
# Returns 1 recorded, 0 refused (terminal already, or another attempt holds the job).
RECORD = SETTLE + _lua("""
local a = cjson.decode(ARGV[1])
local terminal = $terminal
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if not fields[1] or terminal[fields[1]] then return 0 end
if a.attempt == nil then
  if fields[1] ~= '$queued' then return 0 end
elseif fields[1] ~= '$running' or tonumber(fields[2]) ~= a.attempt then
  return 0
end
redis.call('HSET', KEYS[1], 'state', a.state, 'phase', a.phase,
  'finished_at', a.now, 'heartbeat_at', a.now)
redis.call('HDEL', KEYS[15], a.job_id)
for i = 16, 20 do redis.call('ZREM', KEYS[i], a.job_id) end
for name, value in pairs(a.fields) do
  redis.call('HSET', KEYS[1], name, value)
end
local spend = a.spend
settle(KEYS[10], KEYS[11], KEYS[12], KEYS[13], a.job_id, a.agent_id, spend.prompt, spend.completion,
  spend.estimated and '1' or '0', true, a.usage_ttl_s)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', a.maxlen, '*', 'kind', '$terminal_kind', 'state', a.state,
  'phase', a.phase, 'attempt', fields[2], 'tokens', 0, 'at', a.now)
local clock = redis.call('TIME')
local now_ms = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
redis.call('XADD', KEYS[3], '*', '$ledger_field', (string.gsub(a.event, '"$now_ms"', now_ms, 1)))
redis.call('EXPIRE', KEYS[1], a.ttl_s)
redis.call('EXPIRE', KEYS[2], a.ttl_s)
redis.call('ZREM', KEYS[8], a.job_id)
if a.state == '$failed' then redis.call('ZADD', KEYS[9], a.now_ms, a.job_id) end
redis.call('HINCRBY', KEYS[14], a.state, 1)
local why = redis.call('HGET', KEYS[1], 'reason_code')
if why then redis.call('HINCRBY', KEYS[14], a.state .. ':' .. why, 1) end
redis.call('EXPIRE', KEYS[14], a.stats_ttl_s)
for i = 23, #KEYS do
  if redis.call('GET', KEYS[i]) == a.job_id then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[7], KEYS[i])
  end
end
if a.attempt ~= nil then
  redis.call('HSET', KEYS[4], 'phase', a.phase, 'job_id', a.job_id, 'heartbeat_at', a.now)
end
if a.charge ~= nil then
  local now = a.now_ms
  redis.call('ZADD', KEYS[5], now, a.job_id)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - a.charge.window_ms)
  redis.call('PEXPIRE', KEYS[5], a.charge.window_ms)
  local spent = redis.call('ZCARD', KEYS[5]) >= a.charge.limit
  if spent and redis.call('HGET', KEYS[4], 'suspended') ~= '1' then
    redis.call('HSET', KEYS[4], 'suspended', '1', 'suspended_at', a.now)
    redis.call('XADD', KEYS[3], '*', '$ledger_field', a.charge.event)
  end
end
if a.review then redis.call('ZADD', KEYS[6], a.now_ms, a.job_id) end
local owner = redis.call('HMGET', KEYS[1], 'tenant_id', '$callback_field')
local function notify(kind)
  if owner[2] or redis.call('SISMEMBER', KEYS[22], owner[1] .. ':' .. kind) == 1 then
    redis.call('XADD', KEYS[21], '*', 'type', kind, 'tenant_id', owner[1], 'job_id', a.job_id,
      'agent_id', a.agent_id)
  end
end
if owner[1] then
  notify('$job_terminal')
  if a.review then notify('$review_requested') end
end
return 1
""")

# Return a running job to the queue: by the watchdog when its heartbeat is stale (TAKEOVER), or by
# its own worker when shutting down (HANDBACK). Either way its try is given back, the old attempt
# is fenced out (state is no longer running under it), and arq may start it again at once.
# KEYS: status, events, running, ledger, the queue's claim key, queue and job key (JobQueue), reservation,
# tenant running, tenant day (of the reservation), tenant usage (today), then the fair queue's tenants,
# the job's tenant's ready set, paused, fair tenant, clock and jobs (it goes back to its place there).
# ARGV: attempt, now, maxlen, ledger event json, job id, now ms, stale cutoff ms ('' = no check),
# agent id, usage ttl s, tenant id. What the abandoned attempt spent is counted as estimated: its prompt
# estimate plus the tokens its last heartbeat reported.
# Returns 1 returned to the queue, 0 not ours to return (fresh, other attempt, or no longer running),
# -1 the arq job is gone (nothing to run: the caller records a failure).
REQUEUE = (
    SETTLE
    + FAIR_FUNCTIONS
    + _lua("""
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if fields[1] ~= '$running' or fields[2] ~= ARGV[1] then
  if fields[1] ~= '$running' then redis.call('ZREM', KEYS[3], ARGV[5]) end
  return 0
end
if ARGV[7] ~= '' then
  local beat = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if beat and tonumber(beat) > tonumber(ARGV[7]) then return 0 end
end
if redis.call('EXISTS', KEYS[7]) == 0 then return -1 end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
settle_estimated(KEYS[8], KEYS[9], KEYS[10], KEYS[11], ARGV[5], ARGV[8], tokens, ARGV[9])
redis.call('HDEL', KEYS[1], 'tokens')
redis.call('HSET', KEYS[1], 'state', '$queued', 'phase', '', 'heartbeat_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'tries', -1)
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('DEL', KEYS[5])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5])
local _, _, score = fair_meta(KEYS[17], ARGV[5])
if score then fair_ready(KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16], ARGV[10], ARGV[5], score) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', '$phase_kind', 'state', '$queued',
  'phase', '', 'attempt', ARGV[1], 'tokens', 0, 'at', ARGV[2])
redis.call('XADD', KEYS[4], '*', '$ledger_field', ARGV[4])
return 1
""")
)

# A worker that died after arq marked a job in progress but before START leaves the job `queued`
# with arq's in-progress mark, which hides it from every worker until the mark expires (the job
# timeout plus 20 s). Free such jobs: still queued here, and marked longer ago than the stale age.
# KEYS: pairs of (status, the queue's claim key). ARGV: the mark's full TTL ms, stale age ms.
# Returns the number of marks cleared.
RELEASE_LOST_PICKUPS = _lua("""
local freed = 0
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl > 0 and redis.call('HGET', KEYS[i], 'state') == '$queued'
     and tonumber(ARGV[1]) - ttl > tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[i + 1])
    freed = freed + 1
  end
end
return freed
""")

# KEYS: status. Returns the state; sets cancel_requested when running.
REQUEST_CANCEL = _lua("""
local state = redis.call('HGET', KEYS[1], 'state')
if state == '$running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return state
""")
