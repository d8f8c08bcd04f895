"""Operator actions on governance: agents (save, keys, the kill switch, restoring, error budgets),
reviewers, and the capability vocabulary.

Each change carries its ledger event (who, why, when; never a key) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from governance.agent_keys import REVIEWER_KEY_PREFIX, KeyStore
from governance.api_tokens import ISSUED_SCOPES, Principal, Scope, TokenStore, key_token_id, new_token
from governance.live_state import AgentStateStore
from governance.models import AgentRecord, ReviewerRecord
from governance.registry import (
    AgentRegistry,
    CapabilityVocabulary,
    RegistryError,
    ReviewerRegistry,
    TenantRegistry,
    check_words,
    vocabulary_problems,
)
from plangate_base import codec
from plangate_base.clock import now_iso
from plangate_base.vocabulary import LEDGER_STREAM_FIELD, EventKind, WebhookEvent
from worker.errors import BadRequest
from worker.ids import new_id
from worker.keys import Keys
from worker.ledger_events import ledger_event


def agent_keys(redis: Redis, keys: Keys) -> KeyStore:
    """Where agents' key hashes live."""
    return KeyStore(redis, keys.agent_key, keys.ledger_stream())


def api_tokens(redis: Redis, keys: Keys) -> TokenStore:
    """Where the API's bearer tokens live (agents' and reviewers' keys among them)."""
    return TokenStore(redis, keys.api_token, keys.api_tokens(), keys.ledger_stream())


def reviewer_keys(redis: Redis, keys: Keys) -> KeyStore:
    """Where reviewers' key hashes live."""
    return KeyStore(redis, keys.reviewer_key, keys.ledger_stream(), prefix=REVIEWER_KEY_PREFIX)


def _entry(
    kind: EventKind, agent_id: str | None, tenant_id: str | None, reason: str, payload: dict[str, Any]
) -> dict[str, str]:
    event = ledger_event(
        kind, job_id=None, agent_id=agent_id, tenant_id=tenant_id, reason=reason or None, payload=payload
    )
    return {LEDGER_STREAM_FIELD: codec.dumps(event)}


def agent_change_entry(kind: EventKind, agent_id: str, *, reason: str, by: str) -> dict[str, str]:
    """The ledger entry of a change to an agent's live state (revoked, restored, budget_reset)."""
    return _entry(kind, agent_id, None, reason, {"by": by, "reason": reason})


class AgentAdmin:
    """Every operator change to agents, reviewers and the vocabulary, each recorded in the ledger."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._states = AgentStateStore(redis, keys)
        self.agents = AgentRegistry(redis, keys)
        self.tenants = TenantRegistry(redis, keys)
        self.reviewers = ReviewerRegistry(redis, keys)
        self.vocabulary = CapabilityVocabulary(redis, keys)
        self._agent_keys = agent_keys(redis, keys)
        self._reviewer_keys = reviewer_keys(redis, keys)
        self.tokens = api_tokens(redis, keys)

    async def save_agent(
        self,
        record: AgentRecord,
        *,
        by: str,
        source: str = "cli",
        kind: EventKind = EventKind.AGENT_SAVED,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Add or replace an agent after checking its lists against the vocabulary and its tenant;
        returns False (and records nothing) when the stored record is already this one. An install or
        upgrade from a template records its own `kind` with `details` (template, version, diff)."""
        problems = vocabulary_problems(record, await self.vocabulary.known())
        if problems:
            known = ", ".join(sorted(await self.vocabulary.known()))
            raise BadRequest(
                f"agent {record.agent_id}: {'; '.join(problems)}. Known words: {known} "
                "(add more with `plangate vocabulary add WORD --reason ...`)"
            )
        if await self.tenants.get(record.tenant_id) is None:
            raise BadRequest(f"no tenant with id {record.tenant_id!r} (add it with `plangate tenants add`)")
        try:
            stored = await self.agents.get(record.agent_id)
        except RegistryError:
            stored = None  # an unreadable stored record is replaced
        if stored == record:
            return False
        if kind is EventKind.AGENT_SAVED and record.template not in (None, stored and stored.template):
            # Only an install or upgrade says which signed template version an agent runs (and its
            # instructions become the agent's system prompt): a saved record keeps the stored one or none.
            raise BadRequest(
                f"agent {record.agent_id}: `template` is set by installing a template "
                f"(`plangate agents add {record.agent_id} --template NAME@RANGE`), not by saving a record; "
                "leave it out, or send it as stored"
            )
        payload = {"by": by, "source": source, **(details or {}), "record": record.model_dump(mode="json")}
        await self.agents.put(record, _entry(kind, record.agent_id, record.tenant_id, "", payload))
        return True

    async def issue_agent_key(self, agent_id: str, *, by: str) -> str:
        """Issue (or replace) an agent's key; returns the key, shown once and stored hashed."""
        agent = await self.agents.get(agent_id)
        if agent is None:
            raise BadRequest(f"no agent with id {agent_id!r}")
        entry = _entry(EventKind.KEY_ISSUED, agent_id, agent.tenant_id, "", {"by": by, "for": "agent"})
        key = await self._agent_keys.issue(agent_id, entry)
        token_id = key_token_id(Scope.AGENT, agent_id)
        principal = Principal(token_id, Scope.AGENT, agent.tenant_id, agent_id, created_at=now_iso())
        await self.tokens.put(key, principal, None)  # the same key is the agent's API token
        return key

    async def save_reviewer(self, record: ReviewerRecord, *, by: str) -> str:
        """Add or replace a reviewer and issue its key; returns the key, shown once and stored hashed."""
        if await self.tenants.get(record.tenant_id) is None:
            raise BadRequest(f"no tenant with id {record.tenant_id!r} (add it with `plangate tenants add`)")
        payload = {"by": by, "record": record.model_dump(mode="json")}
        await self.reviewers.put(
            record, _entry(EventKind.REVIEWER_SAVED, None, record.tenant_id, "", payload)
        )
        entry = _entry(
            EventKind.KEY_ISSUED,
            None,
            record.tenant_id,
            "",
            {"by": by, "for": f"reviewer {record.reviewer_id}"},
        )
        key = await self._reviewer_keys.issue(record.reviewer_id, entry)
        token_id = key_token_id(Scope.REVIEWER, record.reviewer_id)
        principal = Principal(
            token_id, Scope.REVIEWER, record.tenant_id, reviewer_id=record.reviewer_id, created_at=now_iso()
        )
        await self.tokens.put(key, principal, None)  # the same key is the reviewer's API token
        return key

    async def issue_token(
        self, scope: Scope, *, tenant_id: str | None, name: str, by: str
    ) -> tuple[str, Principal]:
        """Issue a tenant, auditor or admin token for the HTTP API; returns it, shown once and stored
        as a digest, and its principal (its token_id is what `tokens revoke` takes). Agents' and
        reviewers' tokens are their keys (issue_agent_key, save_reviewer)."""
        if scope not in ISSUED_SCOPES:
            names = ", ".join(s.value for s in ISSUED_SCOPES)
            raise BadRequest(f"tokens are issued for {names}; an agent's or reviewer's token is its key")
        if scope is Scope.TENANT:
            if tenant_id is None:
                raise BadRequest("a tenant token needs --tenant")
            if await self.tenants.get(tenant_id) is None:
                raise BadRequest(f"no tenant with id {tenant_id!r} (add it with `plangate tenants add`)")
        elif tenant_id is not None:
            raise BadRequest(f"a {scope.value} token is not bound to a tenant; drop --tenant")
        token = new_token()
        token_id = new_id()[-12:]
        principal = Principal(token_id, scope, tenant_id, name=name, created_at=now_iso())
        payload = {"by": by, "for": f"{scope.value} token {token_id}", "name": name}
        await self.tokens.put(token, principal, _entry(EventKind.KEY_ISSUED, None, tenant_id, "", payload))
        return token, principal

    async def revoke_token(self, token_id: str, *, by: str, reason: str) -> bool:
        """Revoke an API token (or an agent's or reviewer's key as a token) at once."""
        payload = {"by": by, "token_id": token_id, "reason": reason}
        return await self.tokens.revoke(
            token_id, _entry(EventKind.TOKEN_REVOKED, None, None, reason, payload)
        )

    async def add_vocabulary(
        self, words: list[str], *, by: str, reason: str, source: str = "cli"
    ) -> list[str]:
        """Add capability words to the vocabulary; returns the ones that were new."""
        if not reason.strip():
            raise BadRequest("extending the vocabulary needs a reason (--reason)")
        try:
            normal = check_words(words)
        except RegistryError as exc:
            raise BadRequest(str(exc)) from exc
        record = {"by": by, "at": now_iso(), "reason": reason, "source": source}
        payload = {**record, "words": normal}
        return await self.vocabulary.add(
            normal, codec.dumps(record), _entry(EventKind.VOCABULARY_EXTENDED, None, None, reason, payload)
        )

    async def revoke(self, agent_id: str, *, reason: str, by: str) -> None:
        """Stop the agent: queued jobs are refused `revoked`, running ones end `cancelled`."""
        if not reason.strip():
            raise BadRequest("a revocation needs a reason (--reason)")
        entry = agent_change_entry(EventKind.REVOKED, agent_id, reason=reason, by=by)
        at = now_iso()
        notice = await self._revoked_notice(agent_id, reason=reason, by=by, at=at)
        outbox = [(self._keys.webhook_outbox(), notice)] if notice is not None else []
        await self._states.revoke(agent_id, reason, by, at, entry, outbox)

    async def _revoked_notice(self, agent_id: str, *, reason: str, by: str, at: str) -> dict[str, str] | None:
        """The agent.revoked webhook outbox entry, when an endpoint of the agent's tenant takes it; it is
        added in the revocation's own transaction (a revocation is never recorded without it)."""
        agent = await self.agents.get(agent_id)
        if agent is None or not await self._redis.sismember(
            self._keys.webhook_subscriptions(), f"{agent.tenant_id}:{WebhookEvent.AGENT_REVOKED.value}"
        ):
            return None
        data = {"agent_id": agent_id, "tenant_id": agent.tenant_id, "reason": reason, "by": by, "at": at}
        return {
            "type": WebhookEvent.AGENT_REVOKED.value,
            "tenant_id": agent.tenant_id,
            "job_id": "",
            "agent_id": agent_id,
            "data": codec.dumps(data),
        }

    async def restore(self, agent_id: str, *, by: str, reason: str = "") -> None:
        """Lift a revocation."""
        entry = agent_change_entry(EventKind.RESTORED, agent_id, reason=reason, by=by)
        await self._states.restore(agent_id, by, now_iso(), entry)

    async def reset_budget(self, agent_id: str, *, by: str, reason: str = "") -> None:
        """Forget the agent's counted failures and lift its suspension."""
        entry = agent_change_entry(EventKind.BUDGET_RESET, agent_id, reason=reason, by=by)
        await self._states.reset_budget(agent_id, by, now_iso(), entry)
