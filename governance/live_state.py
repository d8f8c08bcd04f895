"""The Redis-backed state that policy reads: revocations, suspensions, error counts, locks, the tracker.

Thin adapters. Key names come from the caller's key builder. State changes that an auditor must
see carry their ledger entry (already encoded by the caller) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from governance.models import AgentRecord, AgentState
from plangate_base.clock import now_ms


class StateKeys(Protocol):
    """The key names these adapters need."""

    def agent_state(self, agent_id: str) -> str: ...

    def agent_errors(self, agent_id: str) -> str: ...

    def lock(self, resource: str) -> str: ...

    def locks(self) -> str: ...

    def ledger_stream(self) -> str: ...


LedgerEntry = dict[str, str]  # the stream fields of one encoded ledger event


class AgentStateStore:
    """Reads an agent's live state; revokes, restores and resets its error budget."""

    def __init__(self, redis: Redis, keys: StateKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def read(self, agent: AgentRecord) -> AgentState:
        """The agent's state, with its failures counted over its error-budget window."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self.read_on(pipe, agent.agent_id, agent.error_budget_window_s)
            raw, errors = await pipe.execute()
        return self.from_raw(raw, errors)

    def read_on(self, pipe: Pipeline, agent_id: str, window_s: int) -> None:
        """Queue `read`'s two reads on `pipe` (the state hash, then the failures in the last `window_s`:
        give both replies to `from_raw`), to share a round trip."""
        pipe.hgetall(self._keys.agent_state(agent_id))
        self.count_errors_on(pipe, agent_id, window_s)

    def count_errors_on(self, pipe: Pipeline, agent_id: str, window_s: int) -> None:
        """Queue the count of the agent's failures in the last `window_s` on `pipe`."""
        pipe.zcount(self._keys.agent_errors(agent_id), now_ms() - window_s * 1000, "+inf")

    @staticmethod
    def from_raw(raw: dict[str, str], errors: int) -> AgentState:
        """`read`'s answer from the state hash and the failure count."""
        return AgentState(
            revoked=raw.get("revoked") == "1",
            revoked_reason=raw.get("revoked_reason", ""),
            suspended=raw.get("suspended") == "1",
            recent_errors=int(errors),
            phase=raw.get("phase", ""),
            job_id=raw.get("job_id", ""),
            heartbeat_at=raw.get("heartbeat_at", ""),
        )

    async def raw(self, agent_id: str) -> dict[str, str]:
        """Every field of the agent's state hash (for `plangate agents show`)."""
        return await self._redis.hgetall(self._keys.agent_state(agent_id))

    async def revoke(
        self,
        agent_id: str,
        reason: str,
        by: str,
        at: str,
        ledger: LedgerEntry,
        notices: Sequence[tuple[str, Mapping[str, str]]] = (),
    ) -> None:
        """The kill switch: queued jobs are refused, running ones stop at their next heartbeat.

        `notices` are (stream, fields) entries added in the same transaction (the caller's webhook
        outbox entry): recorded with the revocation or not at all."""
        fields = {"revoked": "1", "revoked_reason": reason, "revoked_by": by, "revoked_at": at}
        await self._change(agent_id, fields, [], ledger, notices)

    async def restore(self, agent_id: str, by: str, at: str, ledger: LedgerEntry) -> None:
        """Lift a revocation."""
        await self._change(
            agent_id, {"restored_by": by, "restored_at": at}, ["revoked", "revoked_reason"], ledger
        )

    async def reset_budget(self, agent_id: str, by: str, at: str, ledger: LedgerEntry) -> None:
        """Forget the agent's counted failures and lift its suspension."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.agent_errors(agent_id))
            pipe.hdel(self._keys.agent_state(agent_id), "suspended", "suspended_at")
            pipe.hset(
                self._keys.agent_state(agent_id), mapping={"budget_reset_by": by, "budget_reset_at": at}
            )
            pipe.xadd(self._keys.ledger_stream(), ledger)
            await pipe.execute()

    async def _change(
        self,
        agent_id: str,
        fields: dict[str, str],
        drop: list[str],
        ledger: LedgerEntry,
        notices: Sequence[tuple[str, Mapping[str, str]]] = (),
    ) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.agent_state(agent_id), mapping=fields)
            if drop:
                pipe.hdel(self._keys.agent_state(agent_id), *drop)
            pipe.xadd(self._keys.ledger_stream(), ledger)
            for stream, entry in notices:
                pipe.xadd(stream, dict(entry))
            await pipe.execute()


# KEYS: the lock keys, then the index. ARGV: job id, ttl ms.
# All or nothing: returns 0 when every lock is ours, else the 1-based index of the first held one.
_ACQUIRE = """
local n = #KEYS - 1
for i = 1, n do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then return i end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  redis.call('SADD', KEYS[#KEYS], KEYS[i])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a resource lock and for how much longer (unless renewed)."""

    resource: str
    job_id: str
    ttl_ms: int


class LockStore:
    """Resource locks a job holds while it plans; the heartbeat renews them, RECORD releases them."""

    def __init__(self, redis: Redis, keys: StateKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._acquire = redis.register_script(_ACQUIRE)

    async def acquire(self, resources: list[str], job_id: str, ttl_ms: int) -> str | None:
        """Take every lock for `job_id`, or none: returns the first resource held by another job."""
        if not resources:
            return None
        keys = [self._keys.lock(r) for r in resources] + [self._keys.locks()]
        held = int(await self._acquire(keys=keys, args=[job_id, ttl_ms]))
        return resources[held - 1] if held else None

    async def holder(self, resource: str) -> str | None:
        """The job holding `resource`, if any."""
        return await self._redis.get(self._keys.lock(resource))

    async def holders(self) -> list[LockHolder]:
        """Every held lock; index entries whose lock expired are pruned (not a hot path)."""
        prefix = self._keys.lock("")
        keys = sorted(await self._redis.smembers(self._keys.locks()))
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            values = await pipe.execute()
        held, gone = [], []
        for key, job_id, ttl in zip(keys, values[::2], values[1::2], strict=True):
            if job_id is None:
                gone.append(key)
            else:
                held.append(LockHolder(key.removeprefix(prefix), job_id, int(ttl)))
        if gone:
            await self._redis.srem(self._keys.locks(), *gone)
        return held
