"""Human review of escalated plans: the queue of jobs waiting, and the one-time decision on each."""

from __future__ import annotations

from redis.asyncio import Redis

from governance.vocabulary import Decision, JobState
from worker import codec
from worker.clock import now_iso
from worker.errors import JobNotFound, NotReviewable
from worker.job_models import JobStatus
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.status_store import StatusStore

# KEYS: status, review queue, ledger. ARGV: job id, review json, ledger event json.
# Returns 1 recorded, -1 unknown job, 0 not an escalated plan, -2 reviewed already.
_DECIDE = f"""
local f = redis.call('HMGET', KEYS[1], 'state', 'decision', 'review')
if not f[1] then return -1 end
if f[1] ~= '{JobState.DONE.value}' or f[2] ~= '{Decision.ESCALATE.value}' then return 0 end
if f[3] then return -2 end
redis.call('HSET', KEYS[1], 'review', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
return 1
"""


class ReviewDesk:
    """Lists escalated jobs and records a human's approve or reject, once per job."""

    def __init__(self, redis: Redis, keys: Keys, status: StatusStore) -> None:
        self._redis = redis
        self._keys = keys
        self._status = status
        self._decide = redis.register_script(_DECIDE)

    async def pending(self) -> list[JobStatus]:
        """Escalated jobs not reviewed yet, oldest first (entries whose status expired are dropped)."""
        waiting: list[JobStatus] = []
        for job_id in await self._redis.zrange(self._keys.review_pending(), 0, -1):
            try:
                waiting.append(await self._status.read(job_id))
            except JobNotFound:
                await self._redis.zrem(self._keys.review_pending(), job_id)
        return waiting

    async def decide(self, job_id: str, *, approve: bool, by: str, note: str = "") -> JobStatus:
        """Record the human decision in the job's status and in the ledger."""
        status = await self._status.read(job_id)
        decision = "approved" if approve else "rejected"
        review = {"decision": decision, "by": by, "note": note, "at": now_iso()}
        event = ledger_event(
            f"review_{decision}",
            job_id=job_id,
            agent_id=status.agent_id,
            tenant_id=status.tenant_id,
            attempt=status.attempt,
            decision=Decision.ESCALATE.value,
            reason=decision,
            payload={"reviewer": by, "note": note},
        )
        keys = [self._keys.job(job_id), self._keys.review_pending(), self._keys.ledger_stream()]
        outcome = int(await self._decide(keys=keys, args=[job_id, codec.dumps(review), codec.dumps(event)]))
        if outcome == -1:
            raise JobNotFound(job_id)
        if outcome == 0:
            raise NotReviewable(f"job {job_id} is not an escalated plan (state {status.state.value})")
        if outcome == -2:
            raise NotReviewable(f"job {job_id} was reviewed already")
        return await self._status.read(job_id)
