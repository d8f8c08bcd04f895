"""Bearer tokens of the HTTP API: who a request is, and what it may see and do.

A token names one principal with one scope:

- `agent`: an agent's key (`plangate agents issue-key`): submit for that agent; read, watch and cancel
  that agent's jobs;
- `tenant`: every agent of one tenant (submit for any of them, read all of the tenant's jobs);
- `reviewer`: a reviewer's key (`plangate reviewers add`): the review desk of the reviewer's tenant;
- `auditor`: read any job and its ledger record, and the ledger's verify status;
- `admin`: everything, including agents, tenants, locks and dead letters.

Tokens are random 256-bit strings, shown once. Only their SHA-256 digest is stored (a digest of a
random secret of that length cannot be reversed or guessed, so it needs no salt and can be the lookup
key); the token id is what operators list and revoke. The decisions here are pure functions over a
`Principal`; `TokenStore` is the thin Redis adapter.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

TENANT_TOKEN_PREFIX = "pgt_"


class Scope(StrEnum):
    """What a token may do (see the module docstring)."""

    AGENT = "agent"
    TENANT = "tenant"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    ADMIN = "admin"


# Scopes an operator issues with `plangate tokens issue`; agent and reviewer tokens are their keys.
ISSUED_SCOPES = (Scope.TENANT, Scope.AUDITOR, Scope.ADMIN)


@dataclass(frozen=True)
class Principal:
    """The identity a token proves. `tenant_id` is set for agent, tenant and reviewer tokens."""

    token_id: str
    scope: Scope
    tenant_id: str | None = None
    agent_id: str | None = None
    reviewer_id: str | None = None
    name: str = ""
    created_at: str = ""

    def sees(self, tenant_id: str, agent_id: str) -> bool:
        """Whether this principal may read a job of `agent_id` in `tenant_id`; a job it may not see
        is answered exactly like one that does not exist."""
        if self.scope in (Scope.ADMIN, Scope.AUDITOR):
            return True
        if self.tenant_id != tenant_id:
            return False
        return self.scope is not Scope.AGENT or self.agent_id == agent_id

    def may_act_on(self, tenant_id: str, agent_id: str) -> bool:
        """Whether this principal may cancel a job it sees (auditors and reviewers only read)."""
        return self.scope in (Scope.ADMIN, Scope.TENANT, Scope.AGENT) and self.sees(tenant_id, agent_id)

    def submit_problem(self, agent_id: str | None, tenant_id: str | None) -> str | None:
        """Why this principal may not submit for `agent_id` in `tenant_id` (None when it may). The
        identity comes from the token: a body naming another agent or tenant is refused."""
        if self.scope is Scope.AGENT:
            if agent_id not in (None, self.agent_id):
                return f"this token submits for agent {self.agent_id!r} only, not {agent_id!r}"
        elif self.scope is Scope.TENANT:
            if agent_id is None:
                return "a tenant token must name the agent_id it submits for"
        elif self.scope is not Scope.ADMIN:
            return f"a {self.scope.value} token cannot submit jobs"
        if self.tenant_id is not None and tenant_id not in (None, self.tenant_id):
            return f"this token submits for tenant {self.tenant_id!r} only, not {tenant_id!r}"
        return None

    def public(self) -> dict[str, str | None]:
        """The principal as shown to operators (the token itself is never kept)."""
        return {k: (v.value if isinstance(v, Scope) else v) for k, v in asdict(self).items()}


def token_digest(token: str) -> str:
    """The stored form of a token (and its lookup key)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str = TENANT_TOKEN_PREFIX) -> str:
    """A new random token (shown once to the operator, never stored)."""
    return prefix + secrets.token_urlsafe(32)


def key_token_id(scope: Scope, ident: str) -> str:
    """The token id of an agent's or reviewer's key: one per principal, replaced when re-issued."""
    return f"{scope.value}:{ident}"


class TokenStore:
    """Where token digests live: `token_key(digest)` holds the principal's fields, `index_key` maps
    each token id to its digest (so a token can be listed and revoked by id)."""

    def __init__(
        self, redis: Redis, token_key: Callable[[str], str], index_key: str, ledger_stream: str
    ) -> None:
        self._redis = redis
        self._token_key = token_key
        self._index_key = index_key
        self._ledger_stream = ledger_stream

    async def put(self, token: str, principal: Principal, ledger: dict[str, str] | None) -> None:
        """Store `token` for `principal`, replacing the token this id had before, with its ledger entry
        when given (which never holds the token)."""
        digest = token_digest(token)
        old = await self._redis.hget(self._index_key, principal.token_id)
        fields = {k: v for k, v in principal.public().items() if v is not None}
        async with self._redis.pipeline(transaction=True) as pipe:
            if old and old != digest:
                pipe.delete(self._token_key(old))
            pipe.delete(self._token_key(digest))
            pipe.hset(self._token_key(digest), mapping=fields)
            pipe.hset(self._index_key, principal.token_id, digest)
            if ledger is not None:
                pipe.xadd(self._ledger_stream, ledger)
            await pipe.execute()

    async def lookup(self, token: str) -> Principal | None:
        """The principal `token` proves, or None for an unknown or revoked token (one round trip: put
        and revoke delete a replaced or revoked token's record in the same transaction)."""
        return await self.lookup_digest(token_digest(token))

    async def lookup_digest(self, digest: str) -> Principal | None:
        """The principal of the token with this digest (a web session holds the digest, never the token)."""
        return self.from_raw(await self._redis.hgetall(self._token_key(digest)))

    def read_on(self, pipe: Pipeline, token: str) -> None:
        """Queue the read of `lookup` on `pipe` (one reply: give it to `from_raw`), to share a round trip."""
        pipe.hgetall(self._token_key(token_digest(token)))

    @staticmethod
    def from_raw(raw: dict[str, str]) -> Principal | None:
        """`lookup`'s answer from the token's stored hash."""
        if not raw or "scope" not in raw or "token_id" not in raw:
            return None
        return _principal(raw)

    async def revoke(self, token_id: str, ledger: dict[str, str]) -> bool:
        """Revoke a token by id at once; False when no token has that id."""
        digest = await self._redis.hget(self._index_key, token_id)
        if digest is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._index_key, token_id)
            pipe.delete(self._token_key(digest))
            pipe.xadd(self._ledger_stream, ledger)
            await pipe.execute()
        return True

    async def all(self) -> list[Principal]:
        """Every live token's principal, by token id."""
        found: list[Principal] = []
        for token_id, digest in sorted((await self._redis.hgetall(self._index_key)).items()):
            raw = await self._redis.hgetall(self._token_key(digest))
            if raw.get("token_id") == token_id:
                found.append(_principal(raw))
        return found


def _principal(raw: dict[str, str]) -> Principal:
    return Principal(
        token_id=raw["token_id"],
        scope=Scope(raw["scope"]),
        tenant_id=raw.get("tenant_id"),
        agent_id=raw.get("agent_id"),
        reviewer_id=raw.get("reviewer_id"),
        name=raw.get("name", ""),
        created_at=raw.get("created_at", ""),
    )
