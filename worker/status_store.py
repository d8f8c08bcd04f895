"""The job's status hash and event stream in Redis: the only code that writes them.

Every write that must respect the job's lifecycle is a Lua script that declares all the
keys it touches (Dragonfly requires that): a stale attempt (fencing token) or a job that is
already terminal is never overwritten, and the terminal write, its event and its ledger
entry land together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.asyncio import Redis

from governance.vocabulary import JobState, Phase
from worker import codec
from worker.clock import now_iso
from worker.errors import JobNotFound
from worker.job_models import JobStatus
from worker.keys import JOB_EVENTS_MAXLEN, Keys

_TERMINAL = "{" + ",".join(f'["{s.value}"]=true' for s in JobState if s.terminal) + "}"

# KEYS: status, events, [agent state]. ARGV: now, worker, maxlen, job id.
# Returns {1, attempt} when claimed, {0, state} when terminal already, {-1, ""} when unknown.
_START = f"""
local terminal = {_TERMINAL}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {{-1, ''}} end
if terminal[state] then return {{0, state}} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'phase', 'PREFLIGHT',
  'heartbeat_at', ARGV[1], 'worker', ARGV[2])
if redis.call('HEXISTS', KEYS[1], 'started_at') == 0 then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'phase', 'state', 'running',
  'phase', 'PREFLIGHT', 'attempt', attempt, 'tokens', 0, 'at', ARGV[1])
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'phase', 'PREFLIGHT', 'job_id', ARGV[4], 'heartbeat_at', ARGV[1])
end
return {{1, attempt}}
"""

# KEYS: status, events, agent state, then the job's lock keys.
# ARGV: attempt, kind, phase, now, tokens, progress json, maxlen, job id, lock ttl ms.
# Returns 1 ok, 2 cancel requested, 3 agent revoked, 0 fenced out (other attempt or not running).
_HEARTBEAT = """
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'cancel_requested')
if fields[1] ~= 'running' or fields[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'heartbeat_at', ARGV[4], 'progress', ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'kind', ARGV[2], 'state', 'running',
  'phase', ARGV[3], 'attempt', ARGV[1], 'tokens', ARGV[5], 'at', ARGV[4])
redis.call('HSET', KEYS[3], 'phase', ARGV[3], 'job_id', ARGV[8], 'heartbeat_at', ARGV[4])
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[8] then redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
end
if redis.call('HGET', KEYS[3], 'revoked') == '1' then return 3 end
if fields[3] == '1' then return 2 end
return 1
"""

# KEYS: status, events, ledger, agent state, agent errors, review queue, locks index, then lock keys.
# ARGV: attempt ('queued' = only while queued), state, phase, now, ttl, maxlen, ledger event json,
# job id, now ms, count error (1/0), window ms, budget limit, suspension event json, review (1/0),
# then field/value pairs to set.
# Returns 1 recorded, 0 refused (terminal already, or another attempt holds the job).
_RECORD = f"""
local terminal = {_TERMINAL}
local fields = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if not fields[1] or terminal[fields[1]] then return 0 end
if ARGV[1] == 'queued' then
  if fields[1] ~= 'queued' then return 0 end
elseif fields[1] ~= 'running' or fields[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'phase', ARGV[3],
  'finished_at', ARGV[4], 'heartbeat_at', ARGV[4])
for i = 15, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'terminal', 'state', ARGV[2],
  'phase', ARGV[3], 'attempt', fields[2], 'tokens', 0, 'at', ARGV[4])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
for i = 8, #KEYS do
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

# KEYS: status. Returns the state; sets cancel_requested when running.
_REQUEST_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return state
"""


class Beat(IntEnum):
    """What a heartbeat learned: carry on, or stop (fenced out, cancel asked, agent revoked)."""

    FENCED = 0
    OK = 1
    CANCEL = 2
    REVOKED = 3


@dataclass(frozen=True, slots=True)
class JobRef:
    """What the lifecycle scripts need to know about a job besides its id."""

    job_id: str
    agent_id: str
    locks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """A failure to count against the agent's error budget, and the ledger event if it runs out."""

    window_ms: int
    limit: int
    suspension_event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a job at the start of an attempt."""

    attempt: int | None  # None: nothing to run (terminal already, or unknown)
    state: str


class StatusStore:
    """Owns the status hashes and event streams of jobs."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_s: int, worker_name: str = "") -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._worker = worker_name
        self._start = redis.register_script(_START)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._record = redis.register_script(_RECORD)
        self._request_cancel = redis.register_script(_REQUEST_CANCEL)

    def queued_fields(self, job_id: str, agent_id: str, tenant_id: str, submitted_at: str) -> dict[str, Any]:
        """The status hash of a freshly submitted job (written inside the submit transaction)."""
        return {
            "state": JobState.QUEUED.value,
            "phase": "",
            "attempt": 0,
            "agent_id": agent_id,
            "tenant_id": tenant_id,
            "submitted_at": submitted_at,
            "progress": "{}",
        }

    async def read(self, job_id: str) -> JobStatus:
        """The job's status object; JobNotFound when no such job is known."""
        raw = await self._redis.hgetall(self._keys.job(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return JobStatus.from_hash(job_id, raw)

    async def start(self, job_id: str, agent_id: str | None = None) -> Claim:
        """Claim the job for a new attempt: state running, phase PREFLIGHT, attempt + 1."""
        keys = [self._keys.job(job_id), self._keys.job_events(job_id)]
        if agent_id:
            keys.append(self._keys.agent_state(agent_id))
        code, value = await self._start(keys=keys, args=[now_iso(), self._worker, JOB_EVENTS_MAXLEN, job_id])
        if int(code) == 1:
            return Claim(attempt=int(value), state=JobState.RUNNING.value)
        return Claim(attempt=None, state=str(value) or "unknown")

    async def heartbeat(
        self,
        job: JobRef,
        attempt: int,
        phase: Phase,
        *,
        tokens: int = 0,
        kind: str = "phase",
        lock_ttl_ms: int = 0,
    ) -> Beat:
        """Record a phase change or progress, renew the job's locks and update the agent's
        tracker; tells the caller whether to carry on."""
        k = self._keys
        keys = [k.job(job.job_id), k.job_events(job.job_id), k.agent_state(job.agent_id)]
        keys += [k.lock(r) for r in job.locks]
        progress = codec.dumps({"tokens": tokens})
        args = [
            attempt,
            kind,
            phase.value,
            now_iso(),
            tokens,
            progress,
            JOB_EVENTS_MAXLEN,
            job.job_id,
            lock_ttl_ms,
        ]
        return Beat(int(await self._heartbeat(keys=keys, args=args)))

    async def record(
        self,
        job: JobRef,
        attempt: int | None,
        state: JobState,
        ledger_event: dict[str, Any],
        fields: dict[str, Any],
        *,
        phase: Phase | None = Phase.RECORD,
        charge: BudgetCharge | None = None,
        needs_review: bool = False,
    ) -> bool:
        """Write the terminal state, its event and ledger entry, release the job's locks, count a
        failure against the agent's budget (suspending it when spent) and queue an escalation for
        review: all at once.

        `attempt=None` records only while the job is still queued (a cancel before any worker
        took it). Returns False when the job is terminal already or another attempt holds it.
        """
        k = self._keys
        keys = [
            k.job(job.job_id),
            k.job_events(job.job_id),
            k.ledger_stream(),
            k.agent_state(job.agent_id),
            k.agent_errors(job.agent_id),
            k.review_pending(),
            k.locks(),
            *(k.lock(r) for r in job.locks),
        ]
        args: list[Any] = [
            "queued" if attempt is None else attempt,
            state.value,
            phase.value if phase else "",
            ledger_event["created_at"],
            self._ttl_s,
            JOB_EVENTS_MAXLEN,
            codec.dumps(ledger_event),
            job.job_id,
            int(time.time() * 1000),
            "1" if charge else "0",
            charge.window_ms if charge else 0,
            charge.limit if charge else 0,
            codec.dumps(charge.suspension_event) if charge else "",
            "1" if needs_review else "0",
        ]
        for name, value in fields.items():
            args += [name, value if isinstance(value, str) else codec.dumps(value)]
        return bool(await self._record(keys=keys, args=args))

    async def request_cancel(self, job_id: str) -> str | None:
        """Flag a running job for cancellation; returns the job's state (None when unknown)."""
        return await self._request_cancel(keys=[self._keys.job(job_id)])
