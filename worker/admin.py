"""Operator actions on agents: the kill switch, restoring, and resetting an error budget.

Each changes the agent's live state and puts its ledger event (who, why, when) in the same
transaction.
"""

from __future__ import annotations

from redis.asyncio import Redis

from governance.live_state import AgentStateStore
from worker import codec
from worker.clock import now_iso
from worker.errors import BadRequest
from worker.keys import Keys
from worker.ledger_events import ledger_event


class AgentAdmin:
    """Revoke, restore and reset-budget, each recorded in the ledger."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._states = AgentStateStore(redis, keys)

    async def revoke(self, agent_id: str, *, reason: str, by: str) -> None:
        """Stop the agent: queued jobs are refused `revoked`, running ones end `cancelled`."""
        if not reason.strip():
            raise BadRequest("a revocation needs a reason (--reason)")
        at = now_iso()
        await self._states.revoke(agent_id, reason, by, at, self._entry("revoked", agent_id, reason, by))

    async def restore(self, agent_id: str, *, by: str, reason: str = "") -> None:
        """Lift a revocation."""
        await self._states.restore(agent_id, by, now_iso(), self._entry("restored", agent_id, reason, by))

    async def reset_budget(self, agent_id: str, *, by: str, reason: str = "") -> None:
        """Forget the agent's counted failures and lift its suspension."""
        await self._states.reset_budget(
            agent_id, by, now_iso(), self._entry("budget_reset", agent_id, reason, by)
        )

    @staticmethod
    def _entry(kind: str, agent_id: str, reason: str, by: str) -> dict[str, str]:
        event = ledger_event(
            kind,
            job_id=None,
            agent_id=agent_id,
            tenant_id=None,
            reason=reason or None,
            payload={"by": by, "reason": reason},
        )
        return {"e": codec.dumps(event)}
