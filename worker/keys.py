"""Every Redis key plangate owns, built in one place (the queue backend's keys are worker.queue_backend's).

The parts of a key are separated by `:`. An id that is part of a key may not contain one (the
identifier pattern of governance.models refuses it, and the builders here check again), so no id
can name another record's key: agent `victim:key` would otherwise be agent `victim`'s key hash.
"""

from __future__ import annotations

from typing import NamedTuple

from worker.errors import BadRequest

LEDGER_GROUP = "ledger-writer"
JOB_EVENTS_MAXLEN = 500
SEPARATOR = ":"


def _part(value: str, what: str) -> str:
    if SEPARATOR in value:
        raise BadRequest(f"{what} {value!r} may not contain {SEPARATOR!r}")
    return value


class Keys(NamedTuple):
    """Key builder for one deployment's prefix (default ``plangate:``).

    A NamedTuple (immutable, compared by prefix) rather than a dataclass: dataclasses imports inspect,
    a tenth of what `plangate --help` may cost (bench/cli_startup.py)."""

    prefix: str = "plangate:"

    def job(self, job_id: str) -> str:
        """The job's status hash."""
        return f"{self.prefix}job:{_part(job_id, 'job id')}"

    def job_events(self, job_id: str) -> str:
        """The job's capped event stream (phases, progress, the terminal event)."""
        return f"{self.prefix}job:{_part(job_id, 'job id')}:events"

    def idempotency(self, tenant_id: str, key: str) -> str:
        """Maps a tenant's idempotency key to the job id it created."""
        return f"{self.prefix}idem:{_part(tenant_id, 'tenant id')}:{key}"

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
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}"

    def agents(self) -> str:
        """The set of registered agent ids."""
        return f"{self.prefix}agents"

    def agent_key(self, agent_id: str) -> str:
        """The salted SHA-256 of an agent's key (when it has one)."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:key"

    def tenant(self, tenant_id: str) -> str:
        """A tenant's record (JSON)."""
        return f"{self.prefix}tenant:{_part(tenant_id, 'tenant id')}"

    def tenants(self) -> str:
        """The set of registered tenant ids."""
        return f"{self.prefix}tenants"

    def tenant_running(self, tenant_id: str) -> str:
        """A tenant's running jobs (sorted set, admitted at ms): its concurrency."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:running"

    def tenant_minute(self, tenant_id: str) -> str:
        """A tenant's admissions over the last minute (sorted set, ms): its jobs per minute."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:minute"

    def tenant_day(self, tenant_id: str, day: str) -> str:
        """A tenant's token and cost account for one UTC day: reserved, used, reserved_cost, cost."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:day:{day}"

    def usage(self, tenant_id: str, day: str) -> str:
        """Usage totals of a tenant for one UTC day, per agent and in all (hash)."""
        return f"{self.prefix}usage:{_part(tenant_id, 'tenant id')}:{day}"

    def agent_state(self, agent_id: str) -> str:
        """An agent's live state: revoked, suspended, and the tracker's phase, job and heartbeat."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:state"

    def agent_errors(self, agent_id: str) -> str:
        """An agent's failed jobs in its error-budget window (sorted set, scored by time in ms)."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:errors"

    def lock(self, resource: str) -> str:
        """A resource lock: the holding job's id, with a TTL renewed by its heartbeat."""
        return f"{self.prefix}lock:{resource}"

    def locks(self) -> str:
        """Index of the resources that may be locked (for `plangate locks list`)."""
        return f"{self.prefix}locks"

    def review_pending(self, tenant_id: str) -> str:
        """A tenant's jobs that ended ESCALATE and wait for a human (sorted set, scored by time in ms)."""
        return f"{self.prefix}review:pending:{_part(tenant_id, 'tenant id')}"

    def reviewer(self, reviewer_id: str) -> str:
        """A reviewer's record (JSON): who may decide which tenant's escalated plans."""
        return f"{self.prefix}reviewer:{_part(reviewer_id, 'reviewer id')}"

    def reviewers(self) -> str:
        """The set of registered reviewer ids."""
        return f"{self.prefix}reviewers"

    def reviewer_key(self, reviewer_id: str) -> str:
        """The salted SHA-256 of a reviewer's key."""
        return f"{self.prefix}reviewer:{_part(reviewer_id, 'reviewer id')}:key"

    def capabilities(self) -> str:
        """Capability words operators added to the seed's vocabulary (hash: word -> who, when, why)."""
        return f"{self.prefix}capabilities"
