"""Every Redis key plangate owns, built in one place, and who owns each (the queue backend's are its own).

The parts of a key are separated by `:`. An id that is part of a key may not contain one (the
identifier pattern of governance.models refuses it, and the builders here check again), so no id
can name another record's key: agent `victim:key` would otherwise be agent `victim`'s key hash.

Each builder's docstring says what the key holds and which module writes it ("written by"); any
other module only reads it. The owners, in short:

=====================  ============================================  ===================================
key                    written by                                    holds
=====================  ============================================  ===================================
job                    worker.status_store (its lifecycle Lua; the   the status hash (fields below)
                       queued fields inside client's submit);
                       worker.review sets `review`
job_events             worker.status_store (lifecycle Lua)           the job's capped event stream
reservation            governance.quota (ADMIT writes, SETTLE        what the job reserved
                       reads and deletes)
idempotency            worker.client (submit)                        job id
running                worker.status_store (lifecycle Lua)           job id -> last heartbeat (ms)
failed                 worker.status_store (RECORD); client (retry)  job id -> time failed (ms)
workers(_accepting)    worker.watchdog                               worker name -> last beat (ms)
workers_info           worker.watchdog                               worker name -> version, concurrency
stats_submitted        worker.client (submit)                        a counter
stats_minute           worker.status_store (RECORD)                  state / state:reason -> count
wake                   worker.client (publish)                       (pub/sub channel)
ledger_stream          every module that records (LEDGER_STREAM_FIELD) ledger events; group LEDGER_GROUP
ledger_writer_lock     ledger.writer_lock                            the active writer's name
ledger_anchor          ledger.anchors                                the signed chain head
ledger_checkpoint      ledger.anchors                                the latest signed checkpoint (C2SP note)
ledger_head            ledger.ledger_writer                          the head the writer committed (seq:hash)
agent(s)               governance.registry                           JSON record / the id set
agent_key              governance.agent_keys                         salted key hash
tenant(s)              governance.registry                           JSON record / the id set
tenant_running/minute  governance.quota (ADMIT, SETTLE)              job id -> admitted at (ms)
tenant_day             governance.quota (ADMIT, SETTLE)              the day's token and cost account
usage                  governance.quota (SETTLE)                     the day's usage totals
agent_state            governance.live_state (operator changes);     live state and tracker (below)
                       worker.status_store (tracker, suspension)
agent_errors           worker.status_store (RECORD);                 job id -> failed at (ms)
                       governance.live_state (reset)
lock, locks            governance.live_state (acquire);              holder job id / the index set
                       worker.status_store (renew, release)
review_pending         worker.status_store (RECORD); worker.review   job id -> escalated at (ms)
reviewer(s)            governance.registry                           JSON record / the id set
reviewer_key           governance.agent_keys                         salted key hash
capabilities           governance.registry                           word -> JSON (who, when, why)
webhook_*              worker.webhooks.store (policy, endpoints,     allow lists, endpoints, secrets,
                       secrets, deliveries); every event source adds the outbox (group WEBHOOK_GROUP),
                       to webhook_outbox (RECORD, review, revoke)    due and dead deliveries
fair_*, paused         worker.fair_queue (its Lua, and the fair keys  the fair queue's index (below)
                       the lifecycle Lua and submit touch)
=====================  ============================================  ===================================
"""

from __future__ import annotations

from typing import NamedTuple

from worker.errors import BadRequest

LEDGER_GROUP = "ledger-writer"
WEBHOOK_GROUP = "webhooks"
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
        """The job's status hash. Written by worker.status_store (`queued_fields` in the client's submit
        transaction, then the lifecycle Lua) and worker.review (`review`). Fields: state, phase, attempt,
        tries, request, agent_id, tenant_id, submitted_at, started_at, heartbeat_at, finished_at, worker,
        progress, tokens, cancel_requested, callback_url (the request's, set at submit); at the end
        (worker.outcome) output and decision, or refusal and reason_code, or error and reason_code; review;
        webhooks (the delivery attempts, JSON) and webhook_delivered (the first delivery of the terminal
        event), set by worker.webhooks. TTL: RESULT_TTL_S after the end."""
        return f"{self.prefix}job:{_part(job_id, 'job id')}"

    def job_events(self, job_id: str) -> str:
        """The job's capped event stream (JOB_EVENTS_MAXLEN), written by the lifecycle Lua: entries with
        kind (a StreamKind), state, phase, attempt, tokens, at."""
        return f"{self.prefix}job:{_part(job_id, 'job id')}:events"

    def idempotency(self, tenant_id: str, key: str) -> str:
        """Maps a tenant's idempotency key to the job id it created. Written by worker.client (submit)."""
        return f"{self.prefix}idem:{_part(tenant_id, 'tenant id')}:{key}"

    def queue(self) -> str:
        """arq's queue of this deployment (sorted set of job ids by when they are due, ms)."""
        return f"{self.prefix}queue"

    def running(self) -> str:
        """Running jobs by last heartbeat (sorted set, ms): how the watchdog finds abandoned ones. Written by
        the lifecycle Lua (START, HEARTBEAT, RECORD, REQUEUE)."""
        return f"{self.prefix}running"

    def failed(self) -> str:
        """Failed jobs by time (sorted set, ms): the dead-letter view. Added by RECORD, removed by
        worker.client (retry, and expired ones)."""
        return f"{self.prefix}failed"

    def workers(self) -> str:
        """Live workers by last beat (sorted set, ms), draining ones included: what `plangate stats` shows.
        Written by worker.watchdog."""
        return f"{self.prefix}workers"

    def workers_accepting(self) -> str:
        """Workers taking jobs (not draining) by last beat (sorted set, ms): what `plangate health` counts.
        Written by worker.watchdog."""
        return f"{self.prefix}workers:accepting"

    def workers_info(self) -> str:
        """What each live worker runs (hash: worker name -> JSON version, concurrency, queue), for
        `plangate doctor`. Written by worker.watchdog at each beat; names no longer beating are pruned."""
        return f"{self.prefix}workers:info"

    def stats_submitted(self) -> str:
        """Jobs ever submitted to this queue, by any producer (a counter). Written by worker.client."""
        return f"{self.prefix}stats:submitted"

    def stats_minute(self, minute: str) -> str:
        """Jobs that ended in one UTC minute (YYYYmmddHHMM), by state and by state:reason (hash). Written by
        RECORD; TTL: STATS_TTL_S."""
        return f"{self.prefix}stats:{minute}"

    def wake(self) -> str:
        """The pub/sub channel a submit (worker.client) publishes on so idle workers poll at once."""
        return f"{self.prefix}wake"

    def ledger_stream(self) -> str:
        """The stream the ledger writer drains into SQLite (consumer group LEDGER_GROUP). Every module that
        records an event adds to it: one field, LEDGER_STREAM_FIELD, the event as JSON."""
        return f"{self.prefix}ledger"

    def ledger_writer_lock(self) -> str:
        """Held by the one active ledger writer; a second writer waits as standby (ledger.writer_lock)."""
        return f"{self.prefix}ledger:writer"

    def ledger_anchor(self) -> str:
        """The latest signed anchor of the ledger chain (head hash and count), written by ledger.anchors."""
        return f"{self.prefix}ledger:anchor"

    def ledger_checkpoint(self) -> str:
        """The latest signed tree head of the ledger, a C2SP checkpoint note, written by ledger.anchors."""
        return f"{self.prefix}ledger:checkpoint"

    def ledger_head(self) -> str:
        """The chain head (`seq:hash`) the active ledger writer committed, set with each ack; a writer taking
        over extends the file's head only when it is this one (ledger.ledger_writer)."""
        return f"{self.prefix}ledger:head"

    def agent(self, agent_id: str) -> str:
        """An agent's registry record (JSON), written by governance.registry."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}"

    def agents(self) -> str:
        """The set of registered agent ids (governance.registry)."""
        return f"{self.prefix}agents"

    def agent_key(self, agent_id: str) -> str:
        """The salted SHA-256 of an agent's key (when it has one), written by governance.agent_keys."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:key"

    def tenant(self, tenant_id: str) -> str:
        """A tenant's record (JSON), written by governance.registry."""
        return f"{self.prefix}tenant:{_part(tenant_id, 'tenant id')}"

    def tenants(self) -> str:
        """The set of registered tenant ids (governance.registry)."""
        return f"{self.prefix}tenants"

    def tenant_jobs(self, tenant_id: str) -> str:
        """A tenant's jobs by submit time (zset job id -> enqueue ms; written by PlanClient.submit,
        trimmed to RESULT_TTL_S there): what GET /v1/jobs lists."""
        return f"{self.prefix}tenant:{_part(tenant_id, 'tenant id')}:jobs"

    def tenant_running(self, tenant_id: str) -> str:
        """A tenant's running jobs (sorted set, admitted at ms): its concurrency (governance.quota)."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:running"

    def tenant_minute(self, tenant_id: str) -> str:
        """A tenant's admissions over the last minute (sorted set, ms): its jobs per minute. Owned by
        governance.quota."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:minute"

    def tenant_day(self, tenant_id: str, day: str) -> str:
        """A tenant's token and cost account for one UTC day: reserved, used, reserved_cost, cost. Owned by
        governance.quota; TTL: QUOTA_DAY_TTL_S."""
        return f"{self.prefix}quota:{_part(tenant_id, 'tenant id')}:day:{day}"

    def reservation(self, job_id: str) -> str:
        """What a job reserved against its tenant's quota, until it ends or goes back to the queue. Owned by
        governance.quota (written at admission, settled and deleted by its SETTLE inside RECORD and
        REQUEUE). Fields: tokens, cost, prompt (estimate), price_prompt, price_completion, day."""
        return f"{self.prefix}job:{_part(job_id, 'job id')}:reservation"

    def usage(self, tenant_id: str, day: str) -> str:
        """Usage totals of a tenant for one UTC day, in all and per agent (hash): prompt_tokens,
        completion_tokens, cost_usd, jobs, estimated_calls, and agent:<id>:<the same>. Written by
        governance.quota's SETTLE; TTL: USAGE_TTL_S."""
        return f"{self.prefix}usage:{_part(tenant_id, 'tenant id')}:{day}"

    def agent_state(self, agent_id: str) -> str:
        """An agent's live state (hash). governance.live_state writes the operator's changes (revoked,
        revoked_reason, revoked_by, revoked_at, restored_by, restored_at, budget_reset_by, budget_reset_at);
        the lifecycle Lua writes the tracker (phase, job_id, heartbeat_at) and the suspension (suspended,
        suspended_at) when RECORD spends the error budget."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:state"

    def agent_errors(self, agent_id: str) -> str:
        """An agent's failed jobs in its error-budget window (sorted set, scored by time in ms). Added by
        RECORD, cleared by governance.live_state (budget reset)."""
        return f"{self.prefix}agent:{_part(agent_id, 'agent id')}:errors"

    def lock(self, resource: str) -> str:
        """A resource lock: the holding job's id, with a TTL renewed by its heartbeat. Taken by
        governance.live_state, renewed by HEARTBEAT and released by RECORD."""
        return f"{self.prefix}lock:{resource}"

    def locks(self) -> str:
        """Index of the resources that may be locked (for `plangate locks list`): governance.live_state adds,
        RECORD removes."""
        return f"{self.prefix}locks"

    def review_pending(self, tenant_id: str) -> str:
        """A tenant's jobs that ended ESCALATE and wait for a human (sorted set, scored by time in ms). Added
        by RECORD, removed by worker.review."""
        return f"{self.prefix}review:pending:{_part(tenant_id, 'tenant id')}"

    def reviewer(self, reviewer_id: str) -> str:
        """A reviewer's record (JSON): who may decide which tenant's escalated plans (governance.registry)."""
        return f"{self.prefix}reviewer:{_part(reviewer_id, 'reviewer id')}"

    def reviewers(self) -> str:
        """The set of registered reviewer ids (governance.registry)."""
        return f"{self.prefix}reviewers"

    def reviewer_key(self, reviewer_id: str) -> str:
        """The salted SHA-256 of a reviewer's key, written by governance.agent_keys."""
        return f"{self.prefix}reviewer:{_part(reviewer_id, 'reviewer id')}:key"

    def capabilities(self) -> str:
        """Capability words operators added to the seed's vocabulary (hash: word -> JSON who, when, why),
        written by governance.registry."""
        return f"{self.prefix}capabilities"

    # The fair queue (worker.fair_queue): which queued job a worker takes next. arq's queue still holds
    # every job; these say in which order they are picked.

    def fair_tenants(self) -> str:
        """Tenants with ready (due, not paused) work, scored by their pass (sorted set): the lowest picks."""
        return f"{self.prefix}fair:tenants"

    def fair_ready(self, tenant_id: str) -> str:
        """A tenant's ready jobs by order score (sorted set: submit ms plus its priority's aging offset)."""
        return f"{self.prefix}fair:ready:{_part(tenant_id, 'tenant id')}"

    def fair_tenant(self, tenant_id: str) -> str:
        """A tenant's fair-share state while it has no ready work (hash: pass)."""
        return f"{self.prefix}fair:tenant:{_part(tenant_id, 'tenant id')}"

    def fair_clock(self) -> str:
        """The fair queue's virtual time: the pass of the last start (a number)."""
        return f"{self.prefix}fair:clock"

    def fair_jobs(self) -> str:
        """Queued jobs' place in the fair queue (hash: job id -> "tenant agent score submit_ms"). Written at
        submit, deleted by RECORD."""
        return f"{self.prefix}fair:jobs"

    def fair_delayed(self) -> str:
        """Jobs that may not start yet (sorted set, not_before ms); moved to their tenant's ready set when
        due."""
        return f"{self.prefix}fair:delayed"

    def fair_parked(self) -> str:
        """Jobs of paused agents a pick passed over (sorted set, order score); back to ready on resume."""
        return f"{self.prefix}fair:parked"

    def fair_picked(self) -> str:
        """Jobs picked and not started yet (sorted set, picked at ms): the watchdog re-queues lost picks."""
        return f"{self.prefix}fair:picked"

    def fair_deadlines(self) -> str:
        """Queued jobs with a deadline (sorted set, deadline ms): the watchdog ends expired ones."""
        return f"{self.prefix}fair:deadlines"

    def paused(self) -> str:
        """What is paused (hash: governance.fair_share.pause_field -> JSON who, when, why)."""
        return f"{self.prefix}fair:paused"

    def fair_starts(self, minute: str) -> str:
        """Job starts per tenant in one UTC minute (hash tenant -> count; TTL: STATS_TTL_S)."""
        return f"{self.prefix}fair:starts:{minute}"

    def api_token(self, digest: str) -> str:
        """One API token's principal (hash; written by governance/api_tokens.py TokenStore)."""
        return f"{self.prefix}api:token:{_part(digest, 'token digest')}"

    def api_tokens(self) -> str:
        """Live API tokens (hash: token id -> digest; TokenStore): what `tokens list`/`revoke` use."""
        return f"{self.prefix}api:tokens"

    def web_session(self, session_id: str) -> str:
        """A signed-in browser's session of the live view (string: the token's digest, with a TTL;
        worker/api/web.py)."""
        return f"{self.prefix}web:session:{_part(session_id, 'session id')}"

    def web_login(self, nonce: str) -> str:
        """A one-time sign-in link of the live view (string: the token's digest, short TTL)."""
        return f"{self.prefix}web:login:{_part(nonce, 'login link')}"

    def api_rate(self, token_id: str, window: int) -> str:
        """Requests one token made in one rate-limit window (counter; worker/api/auth.py)."""
        return f"{self.prefix}api:rate:{window}:{token_id}"

    def webhook_policy(self, tenant_id: str) -> str:
        """A tenant's webhook allow list (JSON WebhookPolicy), set by an admin (worker.webhooks.store)."""
        return f"{self.prefix}webhook:policy:{_part(tenant_id, 'tenant id')}"

    def webhook_endpoints(self, tenant_id: str) -> str:
        """A tenant's endpoints (hash: endpoint id -> JSON EndpointRecord), by worker.webhooks.store."""
        return f"{self.prefix}webhook:endpoints:{_part(tenant_id, 'tenant id')}"

    def webhook_secrets(self) -> str:
        """Signing secrets (hash: target `tenant/endpoint id`, or `tenant/callback` -> `whsec_...`). Kept
        readable because they sign; never logged or shown after they are issued."""
        return f"{self.prefix}webhook:secrets"

    def webhook_subscriptions(self) -> str:
        """The set of `tenant:event type` some endpoint of the tenant subscribes to: how an event source
        (RECORD's Lua, review, revoke) knows in one lookup whether to add to the outbox."""
        return f"{self.prefix}webhook:subscriptions"

    def webhook_outbox(self) -> str:
        """Events to deliver (stream, group WEBHOOK_GROUP): type, tenant_id, job_id, agent_id, data. Added
        in the same transaction as the event itself; the deliverer turns each into deliveries."""
        return f"{self.prefix}webhook:outbox"

    def webhook_delivery(self, delivery_id: str) -> str:
        """One delivery (hash): msg_id (the stable webhook-id), target, tenant_id, type, job_id, url, body,
        state (a DeliveryState), attempts, created_ms, last_status. Written by worker.webhooks' Lua."""
        return f"{self.prefix}webhook:delivery:{_part(delivery_id, 'delivery id')}"

    def webhook_due(self, target: str) -> str:
        """One target's pending deliveries by when they are due (sorted set, ms; a claimed one is pushed
        out by its lease, so a killed deliverer's delivery comes due again)."""
        return f"{self.prefix}webhook:due:{_part(target, 'webhook target')}"

    def webhook_ready(self) -> str:
        """Targets by their earliest due delivery (sorted set, ms): what the deliverer polls, so that one
        slow target's backlog never hides another's."""
        return f"{self.prefix}webhook:ready"

    def webhook_dead(self) -> str:
        """Deliveries that gave up, by when (sorted set, ms): `plangate webhooks failed`."""
        return f"{self.prefix}webhook:dead"
