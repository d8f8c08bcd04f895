"""Every Redis key plangate owns, built in one place (arq's own keys stay arq's)."""

from __future__ import annotations

from dataclasses import dataclass

LEDGER_GROUP = "ledger-writer"
JOB_EVENTS_MAXLEN = 500


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one deployment's prefix (default ``plangate:``)."""

    prefix: str = "plangate:"

    def job(self, job_id: str) -> str:
        """The job's status hash."""
        return f"{self.prefix}job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """The job's capped event stream (phases, progress, the terminal event)."""
        return f"{self.prefix}job:{job_id}:events"

    def idempotency(self, tenant_id: str, key: str) -> str:
        """Maps a tenant's idempotency key to the job id it created."""
        return f"{self.prefix}idem:{tenant_id}:{key}"

    def running(self) -> str:
        """Running jobs by last heartbeat (sorted set, ms): how the watchdog finds abandoned ones."""
        return f"{self.prefix}running"

    def failed(self) -> str:
        """Failed jobs by time (sorted set, ms): the dead-letter view."""
        return f"{self.prefix}failed"

    def workers(self) -> str:
        """Live workers by last beat (sorted set, ms), draining ones included: what `plangate stats` shows."""
        return f"{self.prefix}workers"

    def workers_accepting(self) -> str:
        """Workers taking jobs (not draining) by last beat (sorted set, ms): what `plangate health` counts."""
        return f"{self.prefix}workers:accepting"

    def stats_submitted(self) -> str:
        """Jobs ever submitted to this queue, by any producer (a counter)."""
        return f"{self.prefix}stats:submitted"

    def stats_minute(self, minute: str) -> str:
        """Jobs that ended in one UTC minute (YYYYmmddHHMM), by state and by state:reason (hash)."""
        return f"{self.prefix}stats:{minute}"

    def wake(self) -> str:
        """The pub/sub channel a submit publishes on so idle workers poll at once."""
        return f"{self.prefix}wake"

    def ledger_stream(self) -> str:
        """The stream the ledger writer drains into SQLite."""
        return f"{self.prefix}ledger"

    def ledger_writer_lock(self) -> str:
        """Held by the one active ledger writer; a second writer waits as standby."""
        return f"{self.prefix}ledger:writer"

    def ledger_anchor(self) -> str:
        """The latest signed anchor of the ledger chain (head hash and count)."""
        return f"{self.prefix}ledger:anchor"

    def agent(self, agent_id: str) -> str:
        """An agent's registry record (JSON)."""
        return f"{self.prefix}agent:{agent_id}"

    def agents(self) -> str:
        """The set of registered agent ids."""
        return f"{self.prefix}agents"

    def agent_key(self, agent_id: str) -> str:
        """The salted SHA-256 of an agent's key (when it has one)."""
        return f"{self.prefix}agent:{agent_id}:key"

    def tenant(self, tenant_id: str) -> str:
        """A tenant's record (JSON)."""
        return f"{self.prefix}tenant:{tenant_id}"

    def tenants(self) -> str:
        """The set of registered tenant ids."""
        return f"{self.prefix}tenants"

    def tenant_running(self, tenant_id: str) -> str:
        """A tenant's running jobs (sorted set, admitted at ms): its concurrency."""
        return f"{self.prefix}quota:{tenant_id}:running"

    def tenant_minute(self, tenant_id: str) -> str:
        """A tenant's admissions over the last minute (sorted set, ms): its jobs per minute."""
        return f"{self.prefix}quota:{tenant_id}:minute"

    def tenant_day(self, tenant_id: str, day: str) -> str:
        """A tenant's token and cost account for one UTC day: reserved, used, reserved_cost, cost."""
        return f"{self.prefix}quota:{tenant_id}:day:{day}"

    def usage(self, tenant_id: str, day: str) -> str:
        """Usage totals of a tenant for one UTC day, per agent and in all (hash)."""
        return f"{self.prefix}usage:{tenant_id}:{day}"

    def agent_state(self, agent_id: str) -> str:
        """An agent's live state: revoked, suspended, and the tracker's phase, job and heartbeat."""
        return f"{self.prefix}agent:{agent_id}:state"

    def agent_errors(self, agent_id: str) -> str:
        """An agent's failed jobs in its error-budget window (sorted set, scored by time in ms)."""
        return f"{self.prefix}agent:{agent_id}:errors"

    def lock(self, resource: str) -> str:
        """A resource lock: the holding job's id, with a TTL renewed by its heartbeat."""
        return f"{self.prefix}lock:{resource}"

    def locks(self) -> str:
        """Index of the resources that may be locked (for `plangate locks list`)."""
        return f"{self.prefix}locks"

    def review_pending(self) -> str:
        """Jobs that ended ESCALATE and wait for a human (sorted set, scored by time in ms)."""
        return f"{self.prefix}review:pending"
