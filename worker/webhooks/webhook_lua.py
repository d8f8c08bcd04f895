"""The Lua scripts of a webhook delivery's life. Each declares every key it touches (DragonflyDB).

FANOUT turns one outbox entry into its deliveries and acknowledges the entry, at once (a deliverer
killed before it ran leaves the entry pending, and it is fanned out again; after, the deliveries
exist). CLAIM takes due deliveries for one attempt each by pushing their due time out by a lease, so a
killed deliverer's delivery comes due again by itself. FINISH records an attempt's outcome, fenced by
the attempt number (a late answer to an attempt whose lease ran out changes nothing). REDELIVER gives
a dead delivery a new retry window. Each keeps the `ready` index (target -> earliest due time) right.
"""

from __future__ import annotations

from string import Template

from plangate_base.vocabulary import LEDGER_STREAM_FIELD, AttemptOutcome, DeliveryState


def _lua(text: str) -> str:
    return Template(_REFRESH + text).substitute(
        pending=DeliveryState.PENDING.value,
        delivered=DeliveryState.DELIVERED.value,
        dead=DeliveryState.DEAD.value,
        retry=AttemptOutcome.RETRY.value,
        outcome_delivered=AttemptOutcome.DELIVERED.value,
        ledger_field=LEDGER_STREAM_FIELD,
    )


_REFRESH = """
local function refresh(ready, due, target)
  local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  if first[1] then redis.call('ZADD', ready, first[2], target) else redis.call('ZREM', ready, target) end
end
"""

# KEYS: outbox, ready, then (delivery hash, due set) per target.
# ARGV[1]: JSON {entry, group, now_ms, lease_ms, targets: [{target, delivery_id, claim, fields}]}; a new
# delivery with `claim` is claimed for its first attempt at once (as CLAIM would).
# Returns {id, attempt, fields, ...} of the claimed ones (an existing delivery is left as it is).
FANOUT = _lua("""
local a = cjson.decode(ARGV[1])
local out = {}
for i, t in ipairs(a.targets) do
  local hash, due = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  if redis.call('EXISTS', hash) == 0 then
    for name, value in pairs(t.fields) do redis.call('HSET', hash, name, value) end
    redis.call('HSET', hash, 'state', '$pending', 'attempts', 0, 'rebased', 0, 'created_ms', a.now_ms)
    if t.claim then
      redis.call('ZADD', due, a.now_ms + a.lease_ms, t.delivery_id)
      table.insert(out, t.delivery_id)
      table.insert(out, redis.call('HINCRBY', hash, 'attempts', 1))
      table.insert(out, redis.call('HGETALL', hash))
    else
      redis.call('ZADD', due, a.now_ms, t.delivery_id)
    end
    refresh(KEYS[2], due, t.target)
  end
end
redis.call('XACK', KEYS[1], a.group, a.entry)
redis.call('XDEL', KEYS[1], a.entry)
return out
""")

# KEYS: ready, the target's due set, then the delivery hash of each id. ARGV: now ms, lease ms, target,
# then the ids. Returns {id, attempt, fields, id, attempt, fields, ...} for those claimed (still due and
# pending; fields: the delivery hash as a flat list).
CLAIM = _lua("""
local now = tonumber(ARGV[1])
local out = {}
for i = 4, #ARGV do
  local id, hash = ARGV[i], KEYS[i - 1]
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score and tonumber(score) <= now then
    if redis.call('HGET', hash, 'state') == '$pending' then
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
      table.insert(out, id)
      table.insert(out, redis.call('HINCRBY', hash, 'attempts', 1))
      table.insert(out, redis.call('HGETALL', hash))
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
end
refresh(KEYS[1], KEYS[2], ARGV[3])
return out
""")

# KEYS: delivery hash, due set, ready, dead set, the job's status hash, ledger stream.
# ARGV[1]: JSON {id, target, attempt, outcome, next_ms, now_ms, status ('' = no answer), ttl_s, job (bool),
# record (the attempt as JSON text, for the job's `webhooks` field), keep, ledger (event JSON or absent)}.
# Returns 1 recorded, 0 fenced out (not pending, or another attempt holds it).
FINISH = _lua("""
local a = cjson.decode(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if f[1] ~= '$pending' or tonumber(f[2]) ~= a.attempt then return 0 end
redis.call('HSET', KEYS[1], 'last_status', a.status, 'last_at_ms', a.now_ms)
if a.outcome == '$retry' then
  redis.call('ZADD', KEYS[2], a.next_ms, a.id)
else
  local state = '$dead'
  if a.outcome == '$outcome_delivered' then state = '$delivered' end
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('ZREM', KEYS[2], a.id)
  redis.call('EXPIRE', KEYS[1], a.ttl_s)
  if state == '$dead' then redis.call('ZADD', KEYS[4], a.now_ms, a.id) end
end
refresh(KEYS[3], KEYS[2], a.target)
if a.job and redis.call('EXISTS', KEYS[5]) == 1 then
  local shown = redis.call('HGET', KEYS[5], 'webhooks')
  local list = {}
  if shown then list = cjson.decode(shown) end
  table.insert(list, cjson.decode(a.record))
  while #list > a.keep do table.remove(list, 1) end
  redis.call('HSET', KEYS[5], 'webhooks', cjson.encode(list))
  if a.ledger and redis.call('HSETNX', KEYS[5], 'webhook_delivered', a.id) == 1 then
    redis.call('XADD', KEYS[6], '*', '$ledger_field', a.ledger)
  end
end
return 1
""")

# KEYS: delivery hash, due set, ready, dead set. ARGV: id, target, now ms.
# Returns 1 due again now (with a new retry window), 0 not a dead delivery.
REDELIVER = _lua("""
local f = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if f[1] ~= '$dead' then return 0 end
redis.call('HSET', KEYS[1], 'state', '$pending', 'created_ms', ARGV[3], 'rebased', f[2])
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
refresh(KEYS[3], KEYS[2], ARGV[2])
return 1
""")
