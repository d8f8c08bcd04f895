"""Human review of escalated plans: a tenant's queue of jobs waiting, and the one-time decision on each.

A desk belongs to one authenticated reviewer and sees and decides only the reviewer's tenant's
jobs; another tenant's job reads exactly like one that does not exist. The ledger records the
reviewer's id as authenticated by its key, never a name the caller typed.
"""

from __future__ import annotations

from redis.asyncio import Redis

from governance.models import ReviewerRecord
from governance.registry import ReviewerRegistry
from plangate_base import codec
from plangate_base.clock import now_iso
from plangate_base.vocabulary import (
    LEDGER_STREAM_FIELD,
    Decision,
    JobState,
    ReviewDecision,
    WebhookEvent,
    review_event_kind,
)
from worker.admin import reviewer_keys
from worker.errors import JobNotFound, NotReviewable, Unauthenticated
from worker.job_models import CALLBACK_URL_FIELD, JobStatus
from worker.keys import Keys
from worker.ledger_events import ledger_event
from worker.status_store import StatusStore

# KEYS: status, the tenant's review queue, ledger, webhook outbox, webhook subscriptions.
# ARGV: job id, review json, ledger event json. The review.decided webhook event goes to the outbox in the
# same transaction when the job has a callback_url or its tenant an endpoint for it.
# Returns 1 recorded, -1 unknown job, 0 not an escalated plan, -2 reviewed already.
_DECIDE = f"""
local f = redis.call('HMGET', KEYS[1], 'state', 'decision', 'review')
if not f[1] then return -1 end
if f[1] ~= '{JobState.DONE.value}' or f[2] ~= '{Decision.ESCALATE.value}' then return 0 end
if f[3] then return -2 end
redis.call('HSET', KEYS[1], 'review', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', '{LEDGER_STREAM_FIELD}', ARGV[3])
local owner = redis.call('HMGET', KEYS[1], 'tenant_id', '{CALLBACK_URL_FIELD}', 'agent_id')
local kind = '{WebhookEvent.REVIEW_DECIDED.value}'
if owner[2] or redis.call('SISMEMBER', KEYS[5], owner[1] .. ':' .. kind) == 1 then
  redis.call('XADD', KEYS[4], '*', 'type', kind, 'tenant_id', owner[1], 'job_id', ARGV[1],
    'agent_id', owner[3])
end
return 1
"""


async def authenticate_reviewer(
    redis: Redis, keys: Keys, reviewer_id: str, key: str | None
) -> ReviewerRecord:
    """The reviewer whose key this is; Unauthenticated for an unknown reviewer or a wrong key
    (the same answer for both, so reviewer ids cannot be probed)."""
    record = await ReviewerRegistry(redis, keys).get(reviewer_id)
    if record is None or not await reviewer_keys(redis, keys).verify(reviewer_id, key):
        raise Unauthenticated(
            f"reviewer {reviewer_id!r} is unknown or the key is wrong (the key is in PLANGATE_REVIEWER_KEY)"
        )
    return record


class ReviewDesk:
    """One reviewer's desk: lists its tenant's escalated jobs and records approve or reject, once per job."""

    def __init__(self, redis: Redis, keys: Keys, status: StatusStore, reviewer: ReviewerRecord) -> None:
        self._redis = redis
        self._keys = keys
        self._status = status
        self.reviewer = reviewer
        self._queue = keys.review_pending(reviewer.tenant_id)
        self._decide = redis.register_script(_DECIDE)

    async def pending(self) -> list[JobStatus]:
        """The tenant's escalated jobs not reviewed yet, oldest first (expired ones are dropped)."""
        waiting: list[JobStatus] = []
        for job_id in await self._redis.zrange(self._queue, 0, -1):
            try:
                waiting.append(await self._status.read(job_id))
            except JobNotFound:
                await self._redis.zrem(self._queue, job_id)
        return waiting

    async def decide(self, job_id: str, *, approve: bool, note: str = "") -> JobStatus:
        """Record this reviewer's decision in the job's status and in the ledger."""
        status = await self._status.read(job_id)
        if status.tenant_id != self.reviewer.tenant_id:
            raise JobNotFound(job_id)  # another tenant's job: as if it did not exist
        decision = ReviewDecision.APPROVED if approve else ReviewDecision.REJECTED
        by = self.reviewer.reviewer_id
        review = {"decision": decision.value, "by": by, "note": note, "at": now_iso()}
        event = ledger_event(
            review_event_kind(decision),
            job_id=job_id,
            agent_id=status.agent_id,
            tenant_id=status.tenant_id,
            attempt=status.attempt,
            decision=Decision.ESCALATE.value,
            reason=decision.value,
            payload={"reviewer": by, "reviewer_name": self.reviewer.name, "note": note},
        )
        k = self._keys
        keys = [k.job(job_id), self._queue, k.ledger_stream(), k.webhook_outbox(), k.webhook_subscriptions()]
        outcome = int(await self._decide(keys=keys, args=[job_id, codec.dumps(review), codec.dumps(event)]))
        if outcome == -1:
            raise JobNotFound(job_id)
        if outcome == 0:
            what = status.output.decision.value if status.output else status.state.value
            raise NotReviewable(
                f"job {job_id} is not an escalated plan ({what}): only plans that ended ESCALATE wait "
                "for review"
            )
        if outcome == -2:
            raise NotReviewable(f"job {job_id} was reviewed already")
        return await self._status.read(job_id)
